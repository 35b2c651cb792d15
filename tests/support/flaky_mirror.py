"""A plain static web server mirroring a repository directory, for tests.

Logs every GET path to LOG and, while the file FAIL exists, answers 503 to
every chunk request after the first N: an interrupted transfer.
Usage: flaky_mirror.py ROOT LOG FAIL N   (prints the port it listens on)
"""
import functools
import http.server
import os
import sys

root, log, fail_flag, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
served = 0


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        global served
        with open(log, "a") as f:
            f.write(self.path + "\n")
        if self.path.startswith("/chunks/") and os.path.exists(fail_flag):
            served += 1
            if served > n:
                self.send_error(503)
                return
        super().do_GET()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
print(server.server_address[1], flush=True)
server.serve_forever()
