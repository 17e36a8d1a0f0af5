/* ambit-hbone-cat: netcat over HBONE, using the managed runtime's file-descriptor API.
 *
 *   ambit-hbone-cat CHAIN.pem KEY.pem ROOT.pem PEER_IP:PORT EXPECTED_SPIFFE_ID AUTHORITY
 *
 * Opens a tunnel to AUTHORITY through the HBONE peer (verifying its SPIFFE id), copies stdin
 * into it (half-closing at EOF) and the tunnel to stdout until the peer ends it. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ambit.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 16);
    *len = buf ? fread(buf, 1, 1 << 16, f) : 0;
    fclose(f);
    return buf;
}

/* `n` bytes at `p` as an ambit_str. */
static ambit_str bytes(const char *p, size_t n) {
    ambit_str s = {(const uint8_t *)p, n};
    return s;
}

static int fail(const char *what, ambit_result rc, ambit_error *err) {
    char msg[1024];
    size_t n = 0;
    if (err && ambit_error_message(err, (uint8_t *)msg, sizeof msg, &n) == AMBIT_RESULT_OK) {
        fprintf(stderr, "ambit-hbone-cat: %s: %.*s\n", what, (int)n, msg);
    } else if (ambit_result_message(rc, (uint8_t *)msg, sizeof msg, &n) == AMBIT_RESULT_OK) {
        fprintf(stderr, "ambit-hbone-cat: %s: %.*s\n", what, (int)n, msg);
    }
    ambit_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s CHAIN.pem KEY.pem ROOT.pem PEER_IP:PORT EXPECTED_SPIFFE_ID AUTHORITY\n", argv[0]);
        return 2;
    }
    ambit_socket_addr peer;
    ambit_result rc = ambit_socket_addr_parse(bytes(argv[4], strlen(argv[4])), &peer);
    if (rc != AMBIT_RESULT_OK) {
        fprintf(stderr, "ambit-hbone-cat: %s: expected PEER_IP:PORT ([IP]:PORT for IPv6)\n", argv[4]);
        return 2;
    }
    size_t chain_len = 0, key_len = 0, root_len = 0;
    char *chain = slurp(argv[1], &chain_len), *key = slurp(argv[2], &key_len), *root = slurp(argv[3], &root_len);
    if (!chain || !key || !root) {
        fprintf(stderr, "ambit-hbone-cat: cannot read the PEM files\n");
        free(chain);
        free(key);
        free(root);
        return 2;
    }
    ambit_runtime *rt = NULL;
    rc = ambit_runtime_new(1, &rt);
    if (rc != AMBIT_RESULT_OK) {
        free(chain);
        free(key);
        free(root);
        return fail("runtime", rc, NULL);
    }
    const ambit_credentials *creds = NULL;
    ambit_error *err = NULL;
    rc = ambit_credentials_from_pem(rt, bytes(chain, chain_len), bytes(key, key_len), bytes(root, root_len), &creds,
                                    &err);
    free(chain);
    free(key);
    free(root);
    if (rc != AMBIT_RESULT_OK) {
        fail("credentials", rc, err);
        ambit_runtime_free(rt);
        return 1;
    }
    int fd = -1;
    rc = ambit_hbone_dial(rt, creds, &peer, bytes(argv[5], strlen(argv[5])), bytes(argv[6], strlen(argv[6])), &fd,
                          &err);
    if (rc != AMBIT_RESULT_OK) {
        fail("tunnel", rc, err);
        ambit_credentials_free(creds);
        ambit_runtime_free(rt);
        return 1;
    }

    char buf[65536];
    int stdin_open = 1;
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = 0, .events = stdin_open ? POLLIN : 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) break;
        if (p[0].revents & (POLLIN | POLLHUP)) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0) break; /* the peer ended the tunnel */
            if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) break;
            fflush(stdout);
        }
        if (stdin_open && (p[1].revents & (POLLIN | POLLHUP))) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0) {
                shutdown(fd, SHUT_WR); /* END_STREAM: the peer reads EOF */
                stdin_open = 0;
            } else if (write(fd, buf, (size_t)n) != n) {
                break;
            }
        }
    }
    close(fd);
    ambit_credentials_free(creds);
    ambit_runtime_free(rt);
    return 0;
}
