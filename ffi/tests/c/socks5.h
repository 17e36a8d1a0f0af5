/* A SOCKS5 CONNECT from a chosen workload address, as an application behind a node proxy. */
#ifndef AMBIT_TEST_SOCKS5_H
#define AMBIT_TEST_SOCKS5_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "ambit.h"

/* Reads exactly `n` bytes (1 = done, 0 = EOF, error or timeout first). */
static inline int read_full(int s, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(s, buf + got, n - got);
        if (k <= 0) return 0;
        got += (size_t)k;
    }
    return 1;
}

/* Connects from `from` (an IPv4 address) through the SOCKS5 proxy at `proxy` (an IPv4
 * address, as `ambit_node_proxy_socks5_addr` gives it) to `to`:`port`. Returns the SOCKS5 reply
 * code (0 = success, with the socket in *fd; reads time out after 20 s) or -1 when the proxy
 * could not be reached or spoke nonsense. */
static inline int socks5_connect(const ambit_socket_addr *proxy, const char *from, const char *to, uint16_t port,
                                 int *fd) {
    if (proxy->family != 4) return -1;
    struct sockaddr_in src = {.sin_family = AF_INET};
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(proxy->port)};
    memcpy(&dst.sin_addr, proxy->ip, 4); /* both in network order */
    unsigned char req[10] = {5, 1, 0, 1, 0, 0, 0, 0, (unsigned char)(port >> 8), (unsigned char)port};
    if (inet_pton(AF_INET, from, &src.sin_addr) != 1 || inet_pton(AF_INET, to, req + 4) != 1) return -1;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -1;
    struct timeval tv = {.tv_sec = 20};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    unsigned char hello[3] = {5, 1, 0}, r[10];
    if (bind(s, (struct sockaddr *)&src, sizeof src) != 0 || connect(s, (struct sockaddr *)&dst, sizeof dst) != 0 ||
        write(s, hello, 3) != 3 || !read_full(s, r, 2) || r[1] != 0 || write(s, req, 10) != 10 ||
        !read_full(s, r, 10)) {
        close(s);
        return -1;
    }
    if (r[1] != 0) { close(s); return r[1]; }
    *fd = s;
    return 0;
}

#endif
