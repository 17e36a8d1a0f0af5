#!/usr/bin/env python3
"""A delayed link between two network namespaces, in user space (this kernel has no netem).

Two TUN devices, one moved into each of the namespaces `<prefix>-c` (10.99.0.1) and
`<prefix>-s` (10.99.0.2); every IP packet read from one is written to the other --delay-ms
later, in order. TCP handshakes, TLS and QUIC packets all pay the delay, as on a real link
(an RTT of twice the delay). Not a bandwidth model: it is for round-trip-bound figures.

  delayline.py --delay-ms 5 --server 'CMD' --client 'CMD'

runs CMD --server in the server namespace, waits for it to print a line starting with
`ready`, runs the client command in the client namespace, prints its output, and removes
both namespaces. Needs root.
"""
import argparse
import asyncio
import fcntl
import os
import shlex
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def sh(*args):
    subprocess.run(args, check=True)


def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


async def relay(a, b, delay):
    loop = asyncio.get_running_loop()

    def pump(src, dst):
        while True:
            try:
                pkt = os.read(src, 65535)
            except BlockingIOError:
                return
            loop.call_later(delay, write, dst, pkt)

    def write(dst, pkt):
        try:
            os.write(dst, pkt)
        except OSError:
            pass  # a full device queue drops the packet, as a link would

    loop.add_reader(a, pump, a, b)
    loop.add_reader(b, pump, b, a)
    await asyncio.Future()


async def main(args):
    c, s = f"{args.prefix}-c", f"{args.prefix}-s"
    fds = []
    try:
        for ns, dev, ip in [(c, "dlc0", "10.99.0.1/24"), (s, "dls0", "10.99.0.2/24")]:
            sh("ip", "netns", "add", ns)
            fds.append(tun(dev))
            sh("ip", "link", "set", dev, "netns", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", ip, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        pump = asyncio.ensure_future(relay(fds[0], fds[1], args.delay_ms / 1000))
        server = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", s, *shlex.split(args.server), stdout=asyncio.subprocess.PIPE
        )
        line = await asyncio.wait_for(server.stdout.readline(), 60)
        if not line.startswith(b"ready"):
            sys.exit(f"server did not get ready: {line!r}")
        client = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", c, *shlex.split(args.client)
        )
        code = await asyncio.wait_for(client.wait(), args.timeout)
        server.kill()
        await server.wait()
        pump.cancel()
        return code
    finally:
        for fd in fds:
            os.close(fd)
        for ns in (c, s):
            subprocess.run(["ip", "netns", "delete", ns], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--server", required=True)
    p.add_argument("--client", required=True)
    p.add_argument("--prefix", default=f"ambit-dl{os.getpid()}")
    p.add_argument("--timeout", type=float, default=900)
    sys.exit(asyncio.run(main(p.parse_args())))
