"""nginx on loopback for compare.py: plain HTTP and TLS (a self-signed certificate made here), stopped
by its pid file only."""
import os
import signal
import socket
import subprocess
import time

NGINX_CONF = """
worker_processes 2;
daemon on;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {work}/tmp;
    proxy_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp;
    scgi_temp_path {work}/tmp;
    ssl_certificate {work}/cert.pem;
    ssl_certificate_key {work}/key.pem;
    ssl_session_cache shared:SSL:10m;
    ssl_session_timeout 1h;
    map $connection $mixed_rate {{ "~[02468]$" 1m; default 8m; }}
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl;
        location /fast/ {{ alias {work}/www/; }}
        location /throttled/ {{ alias {work}/www/; limit_rate 8m; }}
        location /mixed/ {{ alias {work}/www/; limit_rate $mixed_rate; }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificate(work):
    """A self-signed certificate for 127.0.0.1 (two days), which is also the CA the tools trust.
    Returns the path of the certificate."""
    cert, key = f"{work}/cert.pem", f"{work}/key.pem"
    if not (os.path.exists(cert) and os.path.exists(key)
            and subprocess.run(["openssl", "x509", "-checkend", "3600", "-noout", "-in", cert],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert


class Nginx:
    """nginx serving {work}/www on two free ports: `port` (HTTP) and `tls_port` (HTTPS)."""

    def __init__(self, work):
        self.work = work
        self.cacert = make_certificate(work)
        self.port = free_port()
        self.tls_port = free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()

    def url(self, scheme, location, path):
        port = self.tls_port if scheme == "https" else self.port
        return f"{scheme}://127.0.0.1:{port}/{location}/{path}"

    def __enter__(self):
        conf = f"{self.work}/nginx.conf"
        with open(conf, "w") as handle:
            handle.write(NGINX_CONF.format(work=self.work, port=self.port, tls_port=self.tls_port))
        subprocess.run(["nginx", "-c", conf, "-p", self.work], check=True)
        for _ in range(50):  # both listeners up
            if all(self._listening(p) for p in (self.port, self.tls_port)):
                break
            time.sleep(0.1)
        return self

    def __exit__(self, *_):
        try:
            pid = int(open(f"{self.work}/nginx.pid").read())
        except (OSError, ValueError):
            return
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not os.path.exists(f"{self.work}/nginx.pid"):
                break
            time.sleep(0.1)

    @staticmethod
    def _listening(port):
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
