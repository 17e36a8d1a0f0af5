/* Two node proxies started, reloaded and stopped from C; an application connects through
 * node A's SOCKS5 port to an echo server (run by the test harness on 127.31.2.2:8080).
 * Ends with "N passed, 0 failed". */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "ambit.h"

static int passed, failed;
#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (cond) passed++;                                                         \
        else { failed++; fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); } \
    } while (0)
#define S(lit) (const uint8_t *)(lit), strlen(lit)

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

/* SOCKS5 CONNECT from 127.31.1.2 via `proxy` (ip:port) to 127.31.2.2:8080; returns the reply
 * code (0 = success) and the connected socket in *fd. */
static int socks_connect(const char *proxy, int *fd) {
    char host[32];
    int port = 0;
    const char *colon = strrchr(proxy, ':');
    if (!colon || (size_t)(colon - proxy) >= sizeof host) return -1;
    memcpy(host, proxy, (size_t)(colon - proxy));
    host[colon - proxy] = 0;
    port = atoi(colon + 1);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in from = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.31.1.2", &from.sin_addr);
    if (bind(s, (struct sockaddr *)&from, sizeof from) != 0) { close(s); return -1; }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &to.sin_addr);
    if (connect(s, (struct sockaddr *)&to, sizeof to) != 0) { close(s); return -1; }
    unsigned char hello[3] = {5, 1, 0}, r[10];
    if (write(s, hello, 3) != 3 || read(s, r, 2) != 2 || r[1] != 0) { close(s); return -1; }
    unsigned char req[10] = {5, 1, 0, 1, 127, 31, 2, 2, 8080 >> 8, 8080 & 0xff};
    if (write(s, req, 10) != 10) { close(s); return -1; }
    size_t got = 0;
    while (got < 10) {
        ssize_t n = read(s, r + got, 10 - got);
        if (n <= 0) { close(s); return -1; }
        got += (size_t)n;
    }
    if (r[1] != 0) { close(s); return r[1]; }
    *fd = s;
    return 0;
}

int main(void) {
    ambit_runtime *rt = NULL;
    CHECK(ambit_runtime_new(2, &rt) == AMBIT_RESULT_OK);
    const ambit_ca *ca = NULL;
    CHECK(ambit_ca_new(S("cluster.local"), &ca, NULL) == AMBIT_RESULT_OK);
    ambit_node_listeners la = {.socks5 = (const uint8_t *)"127.31.0.1:0", .socks5_len = 12, .hbone_port = 15008};
    ambit_node_listeners lb = {.metrics = (const uint8_t *)"127.31.0.2:0", .metrics_len = 12, .hbone_port = 15008};
    ambit_node_proxy *a = NULL, *b = NULL;
    ambit_error *err = NULL;
    CHECK(ambit_node_proxy_start(rt, S(CONFIG), S("node-a"), ca, &la, &a, &err) == AMBIT_RESULT_OK);
    CHECK(ambit_node_proxy_start(rt, S(CONFIG), S("node-b"), ca, &lb, &b, &err) == AMBIT_RESULT_OK);
    CHECK(err == NULL);
    char proxy[64];
    size_t n = 0;
    CHECK(ambit_node_proxy_socks5_addr(a, (uint8_t *)proxy, sizeof proxy - 1, &n) == AMBIT_RESULT_OK);
    proxy[n] = 0;
    CHECK(ambit_node_proxy_socks5_addr(b, (uint8_t *)proxy + 32, 16, &n) == AMBIT_RESULT_INVALID_PARAMETER);

    int fd = -1;
    CHECK(socks_connect(proxy, &fd) == 0);
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

    /* Reload with a DENY policy (config + policy in one document). */
    size_t cfg_len = strlen(CONFIG) + strlen(DENY) + 1;
    char *denied = malloc(cfg_len);
    snprintf(denied, cfg_len, "%s%s", CONFIG, DENY);
    CHECK(ambit_node_proxy_reload(a, (const uint8_t *)denied, strlen(denied), NULL) == AMBIT_RESULT_OK);
    CHECK(ambit_node_proxy_reload(b, (const uint8_t *)denied, strlen(denied), NULL) == AMBIT_RESULT_OK);
    free(denied);
    fd = -1;
    CHECK(socks_connect(proxy, &fd) == 2);
    /* Broken YAML: refused, the last good config (the DENY) stays. */
    CHECK(ambit_node_proxy_reload(b, S("workloads: [{uid: x}]"), &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(err != NULL);
    char msg[512];
    CHECK(ambit_error_message(err, (uint8_t *)msg, sizeof msg, &n) == AMBIT_RESULT_OK && n > 0);
    ambit_error_free(err);
    CHECK(socks_connect(proxy, &fd) == 2);

    static char metrics[1 << 16];
    CHECK(ambit_node_proxy_metrics(b, (uint8_t *)metrics, 10, &n) == AMBIT_RESULT_INSUFFICIENT_SIZE);
    CHECK(n < sizeof metrics);
    CHECK(ambit_node_proxy_metrics(b, (uint8_t *)metrics, sizeof metrics - 1, &n) == AMBIT_RESULT_OK);
    metrics[n] = 0;
    CHECK(strstr(metrics, "istio_tcp_connections_opened_total{reporter=\"destination\"") != NULL);
    CHECK(strstr(metrics, "response_flags=\"DENY\"") != NULL);

    CHECK(ambit_node_proxy_start(rt, S("not: [valid"), S("node-c"), ca, &la, &a, &err) == AMBIT_RESULT_CONFIG_INVALID);
    ambit_error_free(err);
    CHECK(ambit_node_proxy_start(NULL, S(CONFIG), S("node-c"), ca, &la, &a, NULL) == AMBIT_RESULT_NULL_PARAMETER);

    ambit_node_proxy_free(a);
    ambit_node_proxy_free(b);
    ambit_node_proxy_free(NULL);
    ambit_ca_free(ca);
    ambit_runtime_free(rt);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
