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
static int socks_connect(const char *proxy, int *fd) {
    return socks5_connect(proxy, "127.31.1.2", "127.31.2.2", 8080, fd);
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
    return finish();
}
