/* Two node proxies started, reloaded and stopped from C; an application connects through
 * node A's SOCKS5 port to an echo server (run by the test harness on 127.31.2.2:8080), and
 * the host opens UDP flows to node B (ambit_hbone_dial_udp) to a UDP echo on :5353.
 * Ends with "N passed, 0 failed". */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "ambit.h"
#include "check.h"
#include "socks5.h"

static const char *CONFIG =
    "workloads:\n"
    "- {uid: c/client, name: client, namespace: demo, serviceAccount: client, workloadIps: [127.31.1.2], node: node-a}\n"
    "- {uid: c/web, name: web, namespace: demo, serviceAccount: web, workloadIps: [127.31.2.2], node: node-b}\n";

static const char *DENY =
    "istioPolicies:\n"
    "- apiVersion: security.istio.io/v1\n"
    "  kind: AuthorizationPolicy\n"
    "  metadata: {name: deny-client, namespace: demo}\n"
    "  spec:\n"
    "    action: DENY\n"
    "    rules:\n"
    "    - from: [{source: {principals: [\"cluster.local/ns/demo/sa/client\"]}}]\n";

/* SOCKS5 CONNECT from the client (127.31.1.2) via `proxy` to the app at 127.31.2.2:8080. */
static int socks_connect(const ambit_socket_addr *proxy, int *fd) {
    return socks5_connect(proxy, "127.31.1.2", "127.31.2.2", 8080, fd);
}

/* Sends `msg` as one datagram on `fd` and reads one answer (NUL-terminated) into `buf`;
 * returns its length, or -1 when nothing came within 10 s. */
static ssize_t exchange(int fd, const char *msg, char *buf, size_t cap) {
    if (send(fd, msg, strlen(msg), 0) != (ssize_t)strlen(msg)) return -1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) return -1;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    if (n >= 0) buf[n] = 0;
    return n;
}

/* UDP flows from the client's identity to node B's UDP echo, over both transports: each
 * datagram answered whole and in its own message; then the misuses. */
static void udp_flows(ambit_runtime *rt, const ambit_credentials *client) {
    ambit_socket_addr peer = addr_of("127.31.2.2:15008");
    const char *web = "spiffe://cluster.local/ns/demo/sa/web";
    uint32_t transports[2] = {AMBIT_TRANSPORT_HTTP3, AMBIT_TRANSPORT_HTTP2};
    for (int t = 0; t < 2; t++) {
        int fd = -1;
        ambit_error *err = NULL;
        CHECK(ambit_hbone_dial_udp(rt, client, &peer, S(web), S("127.31.2.2:5353"), transports[t], &fd, &err) == AMBIT_RESULT_OK);
        CHECK(fd >= 0 && err == NULL);
        char buf[2048];
        CHECK(exchange(fd, "first datagram", buf, sizeof buf) == 14 && strcmp(buf, "first datagram") == 0);
        static char big[1200];
        memset(big, 'u', sizeof big - 1);
        CHECK(exchange(fd, big, buf, sizeof buf) == (ssize_t)(sizeof big - 1) && memcmp(buf, big, sizeof big - 1) == 0);
        if (fd >= 0) close(fd);
    }
    int fd = -1;
    ambit_error *err = NULL;
    CHECK(ambit_hbone_dial_udp(rt, client, &peer, S(web), S("127.31.2.2:5353"), 9, &fd, &err) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(fd == -1 && err != NULL);
    ambit_error_free(err);
    CHECK(ambit_hbone_dial_udp(rt, client, &peer, S(web), S("not an address"), AMBIT_TRANSPORT_HTTP3, &fd, NULL) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_hbone_dial_udp(rt, client, &peer, S(web), S("127.31.2.2:5353"), AMBIT_TRANSPORT_HTTP3, NULL, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_hbone_dial_udp(rt, NULL, &peer, S(web), S("127.31.2.2:5353"), AMBIT_TRANSPORT_HTTP3, &fd, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(fd == -1);
}

int main(void) {
    ambit_runtime *rt = NULL;
    CHECK(ambit_runtime_new(2, &rt) == AMBIT_RESULT_OK);
    const ambit_ca *ca = NULL;
    CHECK(ambit_ca_new(S("cluster.local"), &ca, NULL) == AMBIT_RESULT_OK);
    /* Node A: SOCKS5 on 127.31.0.1 (any port). Node B: no SOCKS5 (on by default), metrics on
     * 127.31.0.2, and the setters for what stays off. Options are copied at start. */
    ambit_socket_addr socks_a = addr_of("127.31.0.1:0"), metrics_b = addr_of("127.31.0.2:0");
    ambit_node_options *la = NULL, *lb = NULL;
    CHECK(ambit_node_options_new(S("node-a"), &la) == AMBIT_RESULT_OK && la != NULL);
    CHECK(ambit_node_options_set_socks5(la, &socks_a) == AMBIT_RESULT_OK);
    CHECK(ambit_node_options_set_hbone_port(la, 15008) == AMBIT_RESULT_OK);
    CHECK(ambit_node_options_new(S("node-b"), &lb) == AMBIT_RESULT_OK && lb != NULL);
    CHECK(ambit_node_options_set_socks5(lb, NULL) == AMBIT_RESULT_OK);
    CHECK(ambit_node_options_set_metrics(lb, &metrics_b) == AMBIT_RESULT_OK);
    CHECK(ambit_node_options_set_http_connect(lb, NULL) == AMBIT_RESULT_OK);
    CHECK(ambit_node_options_set_readiness(lb, NULL) == AMBIT_RESULT_OK);
    ambit_node_proxy *a = NULL, *b = NULL;
    ambit_error *err = NULL;
    CHECK(ambit_node_proxy_start(rt, S(CONFIG), ca, la, &a, &err) == AMBIT_RESULT_OK);
    CHECK(ambit_node_proxy_start(rt, S(CONFIG), ca, lb, &b, &err) == AMBIT_RESULT_OK);
    CHECK(err == NULL);
    ambit_node_options_free(la);
    ambit_node_options_free(lb);
    ambit_socket_addr proxy = {0}, none = {0};
    CHECK(ambit_node_proxy_socks5_addr(a, &proxy) == AMBIT_RESULT_OK);
    CHECK(proxy.family == 4 && proxy.ip[0] == 127 && proxy.ip[1] == 31 && proxy.ip[3] == 1 && proxy.port != 0);
    CHECK(ambit_node_proxy_socks5_addr(b, &none) == AMBIT_RESULT_NOT_FOUND); /* off */
    CHECK(none.family == 0);
    CHECK(ambit_node_proxy_socks5_addr(a, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_node_proxy_socks5_addr(NULL, &none) == AMBIT_RESULT_NULL_PARAMETER);
    size_t n = 0;

    int fd = -1;
    CHECK(socks_connect(&proxy, &fd) == 0);
    char buf[16] = {0};
    CHECK(write(fd, "hello", 5) == 5);
    size_t got = 0;
    while (fd >= 0 && got < 5) {
        ssize_t r = read(fd, buf + got, 5 - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    CHECK(got == 5 && memcmp(buf, "hello", 5) == 0);
    if (fd >= 0) close(fd);

    const ambit_credentials *client = NULL;
    CHECK(ambit_ca_issue(rt, ca, S("spiffe://cluster.local/ns/demo/sa/client"), 3600, &client, NULL) == AMBIT_RESULT_OK);
    udp_flows(rt, client);

    /* Reload with a DENY policy (config + policy in one document). */
    size_t cfg_len = strlen(CONFIG) + strlen(DENY) + 1;
    char *denied = malloc(cfg_len);
    snprintf(denied, cfg_len, "%s%s", CONFIG, DENY);
    CHECK(ambit_node_proxy_reload(a, S(denied), NULL) == AMBIT_RESULT_OK);
    CHECK(ambit_node_proxy_reload(b, S(denied), NULL) == AMBIT_RESULT_OK);
    free(denied);
    fd = -1;
    CHECK(socks_connect(&proxy, &fd) == 2);
    /* L4 policy applies to UDP flows as to tunnels: 401 from node B. */
    ambit_socket_addr b_hbone = addr_of("127.31.2.2:15008");
    CHECK(ambit_hbone_dial_udp(rt, client, &b_hbone, S("spiffe://cluster.local/ns/demo/sa/web"), S("127.31.2.2:5353"), AMBIT_TRANSPORT_HTTP3, &fd, &err) == AMBIT_RESULT_TUNNEL_REFUSED);
    CHECK(fd == -1 && err != NULL);
    ambit_error_free(err);
    err = NULL;
    ambit_credentials_free(client);
    /* Broken YAML: refused, the last good config (the DENY) stays. */
    CHECK(ambit_node_proxy_reload(b, S("workloads: [{uid: x}]"), &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(err != NULL);
    char msg[512];
    CHECK(ambit_error_message(err, (uint8_t *)msg, sizeof msg, &n) == AMBIT_RESULT_OK && n > 0);
    ambit_error_free(err);
    CHECK(socks_connect(&proxy, &fd) == 2);

    static char metrics[1 << 16];
    CHECK(ambit_node_proxy_metrics(b, (uint8_t *)metrics, 10, &n) == AMBIT_RESULT_INSUFFICIENT_SIZE);
    CHECK(n < sizeof metrics);
    CHECK(ambit_node_proxy_metrics(b, (uint8_t *)metrics, sizeof metrics - 1, &n) == AMBIT_RESULT_OK);
    metrics[n] = 0;
    CHECK(strstr(metrics, "istio_tcp_connections_opened_total{reporter=\"destination\"") != NULL);
    CHECK(strstr(metrics, "response_flags=\"DENY\"") != NULL);

    /* Refusals: nothing started, `c` untouched. */
    ambit_node_options *lc = NULL;
    CHECK(ambit_node_options_new(S("node-c"), &lc) == AMBIT_RESULT_OK);
    ambit_node_proxy *c = NULL;
    err = NULL;
    CHECK(ambit_node_proxy_start(rt, S("not: [valid"), ca, lc, &c, &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(err != NULL && ambit_error_code(err) == AMBIT_RESULT_CONFIG_INVALID);
    ambit_error_free(err);
    CHECK(ambit_node_proxy_start(NULL, S(CONFIG), ca, lc, &c, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_node_proxy_start(rt, S(CONFIG), ca, NULL, &c, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_node_proxy_start(rt, SN(NULL, 4), ca, lc, &c, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(c == NULL);
    /* Options misuse. */
    ambit_socket_addr no_family = {0};
    CHECK(ambit_node_options_set_hbone_port(lc, 0) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_node_options_set_metrics(lc, &no_family) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_node_options_set_socks5(NULL, &socks_a) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_node_options_set_hbone_port(NULL, 15008) == AMBIT_RESULT_NULL_PARAMETER);
    ambit_node_options_free(lc);
    ambit_node_options *ld = NULL;
    CHECK(ambit_node_options_new(SN(NULL, 6), &ld) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_node_options_new(S("node-d"), NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ld == NULL);
    ambit_node_options_free(NULL);

    ambit_node_proxy_free(a);
    ambit_node_proxy_free(b);
    ambit_node_proxy_free(NULL);
    ambit_ca_free(ca);
    ambit_runtime_free(rt);
    return finish();
}
