"""The README's example: an echo over uTP on loopback, in ten lines."""
import threading, utp

server = utp.create_server(("127.0.0.1", 0))
def echo():
    conn, _ = server.accept()
    with conn:
        conn.sendall(conn.recv(1024))
threading.Thread(target=echo).start()
with utp.create_connection(server.getsockname()) as sock:
    sock.sendall(b"hello over uTP")
    print(sock.recv(1024).decode())
