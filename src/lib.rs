//! coney: an AMQP 0-9-1 broker on one mio reactor.
