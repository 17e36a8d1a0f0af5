/* A waypoint and two node proxies started, reloaded and stopped from C. The client workload
 * (127.32.1.2) sends HTTP/1.1 through node A's SOCKS5 port to the `web` service VIP
 * (127.32.100.1:80); node A tunnels it to the waypoint (127.32.3.2), which authorizes and
 * routes it and tunnels on to node B and the app (run by the test harness on 127.32.2.2:8080,
 * answering with the request line and the x-routed header it saw).
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
    "- {uid: c/client, name: client, namespace: demo, serviceAccount: client, workloadIps: [127.32.1.2], node: node-a}\n"
    "- {uid: c/web, name: web, namespace: demo, serviceAccount: web, workloadIps: [127.32.2.2], node: node-b,\n"
    "   services: {\"demo/web.demo.svc.cluster.local\": {80: 8080}}}\n"
    "- {uid: c/wp, name: waypoint, namespace: demo, serviceAccount: waypoint, workloadIps: [127.32.3.2], node: none}\n"
    "services:\n"
    "- {name: web, namespace: demo, hostname: web.demo.svc.cluster.local, vips: [\"/127.32.100.1\"],\n"
    "   ports: {80: 8080}, waypoint: {destination: \"/127.32.3.2\"}}\n";

/* Refused by the route loader: an unknown path match type. */
static const char *BROKEN_ROUTE =
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: HTTPRoute\n"
    "metadata: {name: broken, namespace: shop}\n"
    "spec:\n"
    "  rules:\n"
    "  - matches: [{path: {type: Nope}}]\n";

static const char *L7 =
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: HTTPRoute\n"
    "metadata: {name: web, namespace: demo}\n"
    "spec:\n"
    "  parentRefs: [{group: \"\", kind: Service, name: web, port: 80}]\n"
    "  rules:\n"
    "  - filters:\n"
    "    - type: RequestHeaderModifier\n"
    "      requestHeaderModifier: {set: [{name: x-routed, value: c-host}]}\n"
    "    backendRefs: [{name: web, port: 80}]\n"
    "---\n"
    "apiVersion: security.istio.io/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: no-admin, namespace: demo}\n"
    "spec:\n"
    "  targetRefs: [{kind: Service, group: \"\", name: web}]\n"
    "  action: DENY\n"
    "  rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: ConfigMap\n"
    "metadata: {name: ignored, namespace: demo}\n";

/* GET `path` from 127.32.1.2 via SOCKS5 `proxy` to the web VIP; returns the status code (-1 on
 * a transport failure) and the response (head and body, NUL-terminated) in buf. */
static int http_get(const ambit_socket_addr *proxy, const char *path, char *buf, size_t cap) {
    int s = -1;
    if (socks5_connect(proxy, "127.32.1.2", "127.32.100.1", 80, &s) != 0) return -1;
    char request[256];
    int len = snprintf(request, sizeof request,
                       "GET %s HTTP/1.1\r\nHost: web.demo.svc.cluster.local\r\nConnection: close\r\n\r\n", path);
    if (write(s, request, (size_t)len) != len) { close(s); return -1; }
    size_t got = 0;
    for (;;) {
        ssize_t n = read(s, buf + got, cap - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
        if (got == cap - 1) break;
    }
    buf[got] = 0;
    close(s);
    int status = -1;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1) return -1;
    return status;
}

int main(void) {
    ambit_runtime *rt = NULL;
    CHECK(ambit_runtime_new(2, &rt) == AMBIT_RESULT_OK);
    const ambit_ca *ca = NULL;
    CHECK(ambit_ca_new(S("cluster.local"), &ca, NULL) == AMBIT_RESULT_OK);
    /* Node A: SOCKS5 on 127.32.0.1 (any port); node B: no SOCKS5 (on by default). */
    ambit_socket_addr socks_a = addr_of("127.32.0.1:0");
    ambit_node_options *la = NULL, *lb = NULL;
    CHECK(ambit_node_options_new(S("node-a"), &la) == AMBIT_RESULT_OK);
    CHECK(ambit_node_options_set_socks5(la, &socks_a) == AMBIT_RESULT_OK);
    CHECK(ambit_node_options_new(S("node-b"), &lb) == AMBIT_RESULT_OK);
    CHECK(ambit_node_options_set_socks5(lb, NULL) == AMBIT_RESULT_OK);
    ambit_node_proxy *a = NULL, *b = NULL;
    ambit_error *err = NULL;
    CHECK(ambit_node_proxy_start(rt, S(CONFIG), ca, la, &a, &err) == AMBIT_RESULT_OK);
    CHECK(ambit_node_proxy_start(rt, S(CONFIG), ca, lb, &b, &err) == AMBIT_RESULT_OK);
    ambit_node_options_free(la);
    ambit_node_options_free(lb);

    /* Kept until the refusals below, which start waypoints with the same options. */
    ambit_socket_addr hbone = addr_of("127.32.3.2:15008"), metrics_at = addr_of("127.32.3.2:0");
    ambit_waypoint_options *o = NULL;
    CHECK(ambit_waypoint_options_new(S("waypoint"), S("demo"), &hbone, &o) == AMBIT_RESULT_OK && o != NULL);
    CHECK(ambit_waypoint_options_set_metrics(o, &metrics_at) == AMBIT_RESULT_OK);
    CHECK(ambit_waypoint_options_set_network(o, S("")) == AMBIT_RESULT_OK);             /* the default */
    CHECK(ambit_waypoint_options_set_root_namespace(o, S("istio-system")) == AMBIT_RESULT_OK); /* the default */
    ambit_waypoint *w = NULL;
    CHECK(ambit_waypoint_start(rt, S(CONFIG), S(L7), ca, o, &w, &err) == AMBIT_RESULT_OK);
    CHECK(err == NULL && w != NULL);
    char text[1 << 12];
    size_t n = 0;
    ambit_socket_addr bound = {0};
    CHECK(ambit_waypoint_hbone_addr(w, &bound) == AMBIT_RESULT_OK);
    CHECK(strcmp(addr_text(&bound, text, sizeof text), "127.32.3.2:15008") == 0);
    CHECK(ambit_waypoint_hbone_addr(w, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_waypoint_hbone_addr(NULL, &bound) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_waypoint_warnings(w, (uint8_t *)text, sizeof text - 1, &n) == AMBIT_RESULT_OK);
    text[n] = 0;
    CHECK(strstr(text, "ConfigMap") != NULL);

    ambit_socket_addr proxy = {0};
    CHECK(ambit_node_proxy_socks5_addr(a, &proxy) == AMBIT_RESULT_OK);
    static char resp[1 << 14];
    CHECK(http_get(&proxy, "/hello?x=1", resp, sizeof resp) == 200);
    CHECK(strstr(resp, "GET /hello?x=1 x-routed=c-host") != NULL);
    CHECK(http_get(&proxy, "/admin/users", resp, sizeof resp) == 403);
    CHECK(strstr(resp, "RBAC: access denied") != NULL);

    /* New L7: only the header changes. Broken L7: refused, the last good one stays. */
    char *l7b = strdup(L7);
    CHECK(l7b != NULL);
    if (!l7b) return finish();
    memcpy(strstr(l7b, "c-host"), "reload", 6);
    CHECK(ambit_waypoint_reload_l7(w, S(l7b), &err) == AMBIT_RESULT_OK);
    free(l7b);
    CHECK(http_get(&proxy, "/again", resp, sizeof resp) == 200);
    CHECK(strstr(resp, "GET /again x-routed=reload") != NULL);
    CHECK(ambit_waypoint_reload_l7(w, S("kind: HTTPRoute\nspec: [nope"), &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(err != NULL);
    CHECK(ambit_error_message(err, (uint8_t *)text, sizeof text, &n) == AMBIT_RESULT_OK && n > 0);
    ambit_error_free(err);
    err = NULL;
    CHECK(http_get(&proxy, "/still", resp, sizeof resp) == 200);
    CHECK(strstr(resp, "x-routed=reload") != NULL);
    CHECK(ambit_waypoint_reload(w, S("workloads: [{uid: x}]"), &err) == AMBIT_RESULT_CONFIG_INVALID);
    ambit_error_free(err);
    err = NULL;
    CHECK(ambit_waypoint_reload(w, S(CONFIG), NULL) == AMBIT_RESULT_OK);

    /* The histograms make this large: ask for the size, then read. */
    size_t need = 0;
    CHECK(ambit_waypoint_metrics(w, NULL, 0, &need) == AMBIT_RESULT_INSUFFICIENT_SIZE);
    char *metrics = malloc(need + 1);
    CHECK(metrics != NULL);
    if (!metrics) return finish();
    ambit_result r = ambit_waypoint_metrics(w, (uint8_t *)metrics, need, &n);
    CHECK(r == AMBIT_RESULT_OK);
    metrics[r == AMBIT_RESULT_OK ? n : 0] = 0;
    CHECK(strstr(metrics, "istio_requests_total{reporter=\"waypoint\"") != NULL);
    CHECK(strstr(metrics, "response_code=\"403\"") != NULL);

    /* Refusals: each with a clear code, nothing started. */
    ambit_waypoint *w2 = NULL;
    CHECK(ambit_waypoint_start(rt, S(CONFIG), S(L7), ca, o, &w2, &err) == AMBIT_RESULT_IO); /* port taken */
    ambit_error_free(err);
    err = NULL;
    /* Bad options are refused when they are made (the start never sees them). */
    ambit_waypoint_options *bad = NULL;
    ambit_socket_addr nowhere = {0};
    CHECK(ambit_socket_addr_parse(S("nowhere"), &nowhere) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_waypoint_options_new(S("waypoint"), S("demo"), &nowhere, &bad) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_waypoint_options_new(S("waypoint"), S("demo"), NULL, &bad) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_waypoint_options_new(SN(NULL, 8), S("demo"), &hbone, &bad) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_waypoint_options_new(S(""), S("demo"), &hbone, &bad) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_waypoint_options_new(S("waypoint"), S(""), &hbone, &bad) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_waypoint_options_new(S("waypoint"), S("demo"), &hbone, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(bad == NULL);
    CHECK(ambit_waypoint_options_set_metrics(o, &nowhere) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_waypoint_options_set_metrics(NULL, &metrics_at) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_waypoint_options_set_network(o, SN(NULL, 3)) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_waypoint_options_set_network(NULL, S("net")) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_waypoint_options_set_root_namespace(o, S("")) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_waypoint_options_set_root_namespace(NULL, S("istio-system")) == AMBIT_RESULT_NULL_PARAMETER);
    ambit_waypoint_options_free(NULL);
    CHECK(ambit_waypoint_start(rt, S("not: [valid"), S(L7), ca, o, &w2, NULL) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(ambit_waypoint_start(rt, S(CONFIG), S("kind: ["), ca, o, &w2, NULL) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(ambit_waypoint_start(rt, SN(NULL, 4), S(L7), ca, o, &w2, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_waypoint_start(NULL, S(CONFIG), S(L7), ca, o, &w2, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_waypoint_start(rt, S(CONFIG), S(L7), ca, NULL, &w2, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_waypoint_start(rt, S(CONFIG), S(L7), ca, o, NULL, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(w2 == NULL);

    /* A broken HTTPRoute in the L7 YAML: refused, and the error says where (the same object
     * and field as ambit_route_table_from_yaml reports, in the file "<l7>"). */
    err = NULL;
    CHECK(ambit_waypoint_start(rt, S(CONFIG), S(BROKEN_ROUTE), ca, o, &w2, &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(err != NULL && ambit_error_code(err) == AMBIT_RESULT_CONFIG_INVALID);
    ambit_str file = {0}, object = {0}, field = {0};
    CHECK(ambit_error_location(err, &file, &object, &field) == AMBIT_RESULT_OK);
    CHECK(str_eq(file, "<l7>"));
    CHECK(str_eq(object, "HTTPRoute shop/broken"));
    CHECK(str_eq(field, "spec.rules[0].matches[0].path.type"));
    ambit_error_free(err);
    err = NULL;
    /* And so does a broken reload, which leaves the running L7 config alone. */
    CHECK(ambit_waypoint_reload_l7(w, S(BROKEN_ROUTE), &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(ambit_error_location(err, &file, &object, &field) == AMBIT_RESULT_OK);
    CHECK(str_eq(file, "<l7>") && str_eq(object, "HTTPRoute shop/broken") &&
          str_eq(field, "spec.rules[0].matches[0].path.type"));
    ambit_error_free(err);
    err = NULL;
    CHECK(w2 == NULL);
    ambit_waypoint_options_free(o);
    CHECK(ambit_waypoint_metrics(NULL, (uint8_t *)metrics, need, &n) == AMBIT_RESULT_NULL_PARAMETER);
    free(metrics);
    CHECK(ambit_waypoint_reload_l7(NULL, S(L7), NULL) == AMBIT_RESULT_NULL_PARAMETER);

    ambit_waypoint_free(w);
    ambit_waypoint_free(NULL);
    ambit_node_proxy_free(a);
    ambit_node_proxy_free(b);
    ambit_ca_free(ca);
    ambit_runtime_free(rt);
    return finish();
}
