"""A small web service under @graceful.main: the README's "Testing your shutdown" example."""

import http.server
import sys

import graceful


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print("request:", format % args, file=sys.stderr, flush=True)


@graceful.main
def main() -> int:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)

    @graceful.register
    def close_server() -> None:
        server.server_close()
        print("server closed", flush=True)

    @graceful.register
    def flush_stats() -> None:
        print("stats flushed", flush=True)

    print(f"listening on port {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    main()
