"""Same-origin test proxy for the management page: serves src/mgmt/www/ at / and forwards
/api/* to a management listener (RabbitMQ's, whose own UI owns its /), passing method,
headers, body and status through unchanged. Lets tests/webui run the page against RabbitMQ.

    python3 tests/webui/serve.py --api-port 15790 [--port 0]

Prints `serving http://127.0.0.1:PORT/` on stdout once it listens. The static files are sent
with the content types and headers coney is to send (see STATIC below). Loopback only.
"""
import argparse
import http.client
import http.server
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WWW = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'src', 'mgmt', 'www')
HOST = '127.0.0.1'
# Path -> (file, content type): the page's whole file list.
STATIC = {
    '/': ('index.html', 'text/html; charset=utf-8'),
    '/index.html': ('index.html', 'text/html; charset=utf-8'),
    '/app.js': ('app.js', 'text/javascript; charset=utf-8'),
    '/app.css': ('app.css', 'text/css; charset=utf-8'),
}
# The page needs nothing but its own origin, so it runs under the strictest policy.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
# Hop-by-hop headers (RFC 9110 section 7.6.1) stay on their own hop.
HOP = {'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding',
       'upgrade', 'host', 'content-length'}
MAX_BODY = 16 * 1024 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    api_port = None

    def log_message(self, fmt, *args):  # quiet unless --verbose
        if self.server.verbose:
            sys.stderr.write('serve.py: ' + fmt % args + '\n')

    def _static(self):
        path = self.path.split('?', 1)[0]
        if path not in STATIC:
            return self._send(404, 'text/plain; charset=utf-8', b'not found\n')
        name, ctype = STATIC[path]
        with open(os.path.join(WWW, name), 'rb') as f:
            body = f.read()
        extra = {'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-cache'}
        if self.server.csp:
            extra['Content-Security-Policy'] = CSP
        return self._send(200, ctype, body, extra)

    def _send(self, status, ctype, body, extra=None):
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def _forward(self):
        length = int(self.headers.get('Content-Length') or 0)
        if length > MAX_BODY:
            return self._send(413, 'text/plain; charset=utf-8', b'too large\n')
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        upstream = http.client.HTTPConnection(HOST, self.api_port, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            resp = upstream.getresponse()
            data = resp.read()
        except OSError as e:
            return self._send(502, 'text/plain; charset=utf-8', ('upstream: %s\n' % e).encode())
        finally:
            upstream.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)

    def _handle(self):
        if self.path.startswith('/api/') or self.path == '/api':
            self._forward()
        elif self.command in ('GET', 'HEAD'):
            self._static()
        else:
            self._send(405, 'text/plain; charset=utf-8', b'method not allowed\n')

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _handle


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--api-port', type=int, required=True, help='management listener to forward /api/* to')
    ap.add_argument('--port', type=int, default=0, help='port to listen on (0: a free one)')
    ap.add_argument('--no-csp', action='store_true',
                    help='send the page without its Content-Security-Policy (to see that the '
                         'page itself, not the policy, keeps server strings inert)')
    ap.add_argument('--verbose', action='store_true')
    args = ap.parse_args()
    Handler.api_port = args.api_port
    srv = http.server.ThreadingHTTPServer((HOST, args.port), Handler)
    srv.daemon_threads = True
    srv.verbose = args.verbose
    srv.csp = not args.no_csp
    print('serving http://%s:%d/' % (HOST, srv.server_address[1]), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
