/* The managed runtime from a C host's own poll() loop: an HBONE listener and a dial, both
 * as file descriptors; 1 MiB each way byte-exact, half-close both ways, refusals as codes.
 * Ends with "N passed, 0 failed". */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ambit.h"
#include "check.h"

#define SIZE (1024 * 1024)

static void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Pumps `out` into `w` while draining `r` into `in`, until all is written and `r` hits EOF
 * (the writer half-closes after its last byte). Returns bytes read. */
static size_t pump(int w, const unsigned char *out, size_t out_len, int r, unsigned char *in, size_t in_cap) {
    size_t sent = 0, got = 0;
    int w_done = 0, r_done = 0;
    while (!w_done || !r_done) {
        struct pollfd p[2] = {{.fd = w, .events = w_done ? 0 : POLLOUT}, {.fd = r, .events = r_done ? 0 : POLLIN}};
        if (poll(p, 2, 10000) <= 0) { fprintf(stderr, "poll timed out\n"); break; }
        if (!w_done && (p[0].revents & POLLOUT)) {
            ssize_t n = write(w, out + sent, out_len - sent);
            if (n > 0) sent += (size_t)n;
            if (sent == out_len) { shutdown(w, SHUT_WR); w_done = 1; }
        }
        if (!r_done && (p[1].revents & (POLLIN | POLLHUP))) {
            ssize_t n = read(r, in + got, in_cap - got);
            if (n == 0) r_done = 1;
            else if (n > 0) got += (size_t)n;
            else if (errno != EAGAIN) r_done = 1;
        }
    }
    return got;
}

int main(void) {
    ambit_runtime *rt = NULL;
    CHECK(ambit_runtime_new(2, &rt) == AMBIT_RESULT_OK && rt);
    const ambit_ca *ca = NULL;
    CHECK(ambit_ca_new(S("cluster.local"), &ca, NULL) == AMBIT_RESULT_OK);
    const char *server_id = "spiffe://cluster.local/ns/test/sa/server";
    const char *client_id = "spiffe://cluster.local/ns/test/sa/client";
    const ambit_credentials *server = NULL, *client = NULL;
    CHECK(ambit_ca_issue(rt, ca, S(server_id), 3600, &server, NULL) == AMBIT_RESULT_OK);
    CHECK(ambit_ca_issue(rt, ca, S(client_id), 3600, &client, NULL) == AMBIT_RESULT_OK);
    ambit_error *err = NULL;
    CHECK(ambit_ca_issue(rt, ca, S("not-an-id"), 3600, &client, &err) == AMBIT_RESULT_INVALID_SPIFFE_ID);
    ambit_error_free(err);
    err = NULL;

    ambit_hbone_listener *l = NULL;
    ambit_socket_addr any_port = addr_of("127.0.0.1:0");
    CHECK(ambit_hbone_listener_new(rt, server, &any_port, 0, &l, NULL) == AMBIT_RESULT_OK);
    ambit_socket_addr addr = {0};
    CHECK(ambit_hbone_listener_local_addr(l, &addr) == AMBIT_RESULT_OK);
    CHECK(addr.family == 4 && addr.ip[0] == 127 && addr.ip[3] == 1 && addr.port != 0);
    int lfd = ambit_hbone_listener_fd(l);
    CHECK(lfd >= 0);
    int sfd = -1;
    char peer[128], authority[64];
    size_t peer_n = 0, auth_n = 0;
    CHECK(ambit_hbone_listener_accept(l, &sfd, (uint8_t *)peer, sizeof peer, &peer_n, (uint8_t *)authority, sizeof authority, &auth_n) == AMBIT_RESULT_WOULD_BLOCK);

    int cfd = -1;
    CHECK(ambit_hbone_dial(rt, client, &addr, S(server_id), S("127.0.0.1:9"), &cfd, NULL) == AMBIT_RESULT_OK);
    CHECK(cfd >= 0);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    CHECK(poll(&p, 1, 10000) == 1);
    CHECK(ambit_hbone_listener_accept(l, &sfd, (uint8_t *)peer, 4, &peer_n, (uint8_t *)authority, sizeof authority, &auth_n) == AMBIT_RESULT_INSUFFICIENT_SIZE);
    CHECK(peer_n == strlen(client_id));
    CHECK(ambit_hbone_listener_accept(l, &sfd, (uint8_t *)peer, sizeof peer, &peer_n, (uint8_t *)authority, sizeof authority, &auth_n) == AMBIT_RESULT_OK);
    CHECK(sfd >= 0 && peer_n == strlen(client_id) && memcmp(peer, client_id, peer_n) == 0);
    CHECK(auth_n == strlen("127.0.0.1:9") && memcmp(authority, "127.0.0.1:9", auth_n) == 0);

    unsigned char *a = malloc(SIZE), *b = malloc(SIZE), *in = malloc(SIZE + 16);
    for (size_t i = 0; i < SIZE; i++) { a[i] = (unsigned char)(i * 7 + 3); b[i] = (unsigned char)(i * 13 + 1); }
    set_nonblocking(cfd);
    set_nonblocking(sfd);
    /* client -> server, then server -> client, each ending in a half-close. */
    size_t got = pump(cfd, a, SIZE, sfd, in, SIZE + 16);
    CHECK(got == SIZE && memcmp(in, a, SIZE) == 0);
    got = pump(sfd, b, SIZE, cfd, in, SIZE + 16);
    CHECK(got == SIZE && memcmp(in, b, SIZE) == 0);
    close(cfd);
    close(sfd);

    /* The same over HTTP/3: the listener serves QUIC on its port too. */
    CHECK(ambit_hbone_dial_transport(rt, client, &addr, S(server_id), S("127.0.0.1:9"), AMBIT_TRANSPORT_HTTP3, &cfd, NULL) == AMBIT_RESULT_OK);
    CHECK(poll(&p, 1, 10000) == 1);
    CHECK(ambit_hbone_listener_accept(l, &sfd, (uint8_t *)peer, sizeof peer, &peer_n, (uint8_t *)authority, sizeof authority, &auth_n) == AMBIT_RESULT_OK);
    set_nonblocking(cfd);
    set_nonblocking(sfd);
    got = pump(cfd, a, SIZE, sfd, in, SIZE + 16);
    CHECK(got == SIZE && memcmp(in, a, SIZE) == 0);
    close(cfd);
    close(sfd);
    CHECK(ambit_hbone_dial_transport(rt, client, &addr, S(server_id), S("127.0.0.1:9"), 7, &cfd, NULL) == AMBIT_RESULT_INVALID_PARAMETER);

    /* The server is not who we expect: a TLS failure, reported as a code with a message. */
    int bad = -1;
    CHECK(ambit_hbone_dial(rt, client, &addr, S("spiffe://cluster.local/ns/x/sa/other"), S("127.0.0.1:9"), &bad, &err) == AMBIT_RESULT_TUNNEL_FAILED);
    CHECK(bad == -1 && err != NULL);
    char msg[512];
    size_t n = 0;
    CHECK(ambit_error_message(err, (uint8_t *)msg, sizeof msg, &n) == AMBIT_RESULT_OK && n > 0);
    ambit_error_free(err);
    /* Not an address: as text, and as an address of no family. */
    ambit_socket_addr nowhere = {0};
    CHECK(ambit_socket_addr_parse(S("nonsense"), &nowhere) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_hbone_dial(rt, client, &nowhere, S(server_id), S("127.0.0.1:9"), &bad, NULL) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_hbone_dial(rt, client, &addr, S("not-an-id"), S("127.0.0.1:9"), &bad, NULL) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_hbone_dial(rt, client, &addr, SN(NULL, 5), S("127.0.0.1:9"), &bad, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_hbone_dial(rt, client, NULL, S(server_id), S("127.0.0.1:9"), &bad, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_hbone_dial(NULL, client, &addr, S(server_id), S("x:1"), &bad, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(bad == -1);
    ambit_hbone_listener *l2 = NULL;
    CHECK(ambit_hbone_listener_new(rt, server, &nowhere, 0, &l2, NULL) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_hbone_listener_new(rt, server, NULL, 0, &l2, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(l2 == NULL);
    CHECK(ambit_hbone_listener_local_addr(l, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_hbone_listener_local_addr(NULL, &nowhere) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_hbone_listener_fd(NULL) == -1);

    free(a);
    free(b);
    free(in);
    ambit_hbone_listener_free(l);
    ambit_hbone_listener_free(NULL);
    ambit_credentials_free(server);
    ambit_credentials_free(client);
    ambit_credentials_free(NULL);
    ambit_ca_free(ca);
    ambit_ca_free(NULL);
    ambit_runtime_free(rt);
    ambit_runtime_free(NULL);
    return finish();
}
