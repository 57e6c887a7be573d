//! Entry point: parses the command line, initialises logging, and runs the reactor.
fn main() {
    println!("coney: not yet");
}
