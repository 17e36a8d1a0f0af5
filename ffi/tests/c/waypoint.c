/* The waypoint-side decisions of ambit.h from C: HTTPRoute decisions, JWT authentication and
 * L7 authorization, where a refused configuration is wrong (`ambit_error_location`), plus
 * misuse (NULL for every pointer, bad UTF-8, bad headers, short buffers, garbage YAML) and
 * `_free(NULL)` for every handle type. Built with -Wall -Wextra -Wpedantic -Werror, and run
 * plain, under ASan + UBSan and under valgrind.
 *
 *   waypoint DIR NOW
 * DIR holds jwks.json and the tokens valid.jwt, expired.jwt, none.jwt, badsig.jwt (ES256,
 * made by the Rust harness); NOW is the Unix time they were made for.
 * Ends with "N passed, 0 failed"; exits 1 if anything failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ambit.h"
#include "check.h"

static ambit_str str(const char *s) {
    ambit_str out = {(const uint8_t *)s, strlen(s)};
    return out;
}

static ambit_str none(void) {
    ambit_str out = {NULL, 0};
    return out;
}

static int eq(ambit_str s, const char *want) {
    return s.len == strlen(want) && (s.len == 0 || memcmp(s.data, want, s.len) == 0);
}

/* Whether `needle` occurs in the n bytes at `hay` (memmem is not standard C). */
static int contains(const char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++) {
        if (memcmp(hay + i, needle, k) == 0) return 1;
    }
    return 0;
}

static ambit_header hdr(const char *name, const char *value) {
    ambit_header h = {str(name), str(value)};
    return h;
}

/* Reads a whole small file into a malloc'd NUL-terminated string. */
static char *slurp(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    char *buf = malloc(65536);
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    buf[n] = '\0';
    return buf;
}

/* Finds edit `name` in a list: its op and value, or -1 when absent. */
static int find_edit(const ambit_header_edits *edits, const char *name, ambit_str *value) {
    for (size_t i = 0; i < ambit_header_edits_len(edits); i++) {
        ambit_header_op op;
        ambit_str n, v;
        if (ambit_header_edits_get(edits, i, &op, &n, &v) != AMBIT_RESULT_OK) return -1;
        if (eq(n, name)) { *value = v; return (int)op; }
    }
    return -1;
}

/* ============================== routes ============================== */

static const char *ROUTES =
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: HTTPRoute\n"
    "metadata: {name: reviews, namespace: shop}\n"
    "spec:\n"
    "  parentRefs: [{group: \"\", kind: Service, name: reviews, port: 9080}]\n"
    "  rules:\n"
    "  - matches: [{headers: [{name: x-feature, value: beta}]}]\n"
    "    backendRefs: [{name: reviews-beta, port: 9080}]\n"
    "  - matches: [{path: {type: PathPrefix, value: /old}}]\n"
    "    filters:\n"
    "    - type: RequestRedirect\n"
    "      requestRedirect: {hostname: new.example, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}\n"
    "  - matches: [{path: {type: PathPrefix, value: /api}}]\n"
    "    filters:\n"
    "    - type: URLRewrite\n"
    "      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}\n"
    "    - type: RequestHeaderModifier\n"
    "      requestHeaderModifier:\n"
    "        set: [{name: x-routed, value: api}]\n"
    "        add: [{name: x-tag, value: two}]\n"
    "        remove: [x-secret]\n"
    "    - type: ResponseHeaderModifier\n"
    "      responseHeaderModifier: {set: [{name: x-served-by, value: reviews-api}], remove: [server]}\n"
    "    - type: RequestMirror\n"
    "      requestMirror: {backendRef: {name: reviews-shadow, port: 9090}}\n"
    "    backendRefs: [{name: reviews-api, port: 8080}]\n"
    "    timeouts: {request: 10s, backendRequest: 2s}\n"
    "    retry: {attempts: 3, codes: [503], backoff: 100ms}\n"
    "  - matches: [{path: {type: Exact, value: /flaky}}]\n"
    "    filters: [{type: ExtensionRef, extensionRef: {group: ambit.dev, kind: Fault, name: down}}]\n"
    "    backendRefs: [{name: reviews-v1, port: 9080}]\n"
    "  - matches: [{path: {type: Exact, value: /limited}}]\n"
    "    filters: [{type: ExtensionRef, extensionRef: {group: ambit.dev, kind: LocalRateLimit, name: one}}]\n"
    "    backendRefs: [{name: reviews-v1, port: 9080}]\n"
    "  - matches: [{path: {type: Exact, value: /nowhere}}]\n"
    "    backendRefs: [{name: reviews-v1, port: 9080, weight: 0}]\n"
    "  - backendRefs:\n"
    "    - {name: reviews-v1, port: 9080, weight: 90}\n"
    "    - {name: reviews-v2, port: 9080, weight: 10}\n"
    "---\n"
    "apiVersion: ambit.dev/v1alpha1\n"
    "kind: Fault\n"
    "metadata: {name: down, namespace: shop}\n"
    "spec:\n"
    "  delay: {fixedDelay: 250ms, percentage: {value: 100}}\n"
    "  abort: {httpStatus: 503, percentage: {value: 100}}\n"
    "---\n"
    "apiVersion: ambit.dev/v1alpha1\n"
    "kind: LocalRateLimit\n"
    "metadata: {name: one, namespace: shop}\n"
    "spec: {maxTokens: 1, tokensPerFill: 1, fillInterval: 1h}\n"
    "---\n"
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: HTTPRoute\n"
    "metadata: {name: ratings, namespace: shop}\n"
    "spec:\n"
    "  parentRefs: [{group: \"\", kind: Service, name: ratings}]\n"
    "  rules:\n"
    "  - matches: [{path: {type: Exact, value: /ratings}}]\n"
    "    backendRefs: [{name: ratings-v1, port: 9080}]\n"
    "---\n"
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: HTTPRoute\n"
    "metadata: {name: by-host, namespace: shop}\n"
    "spec:\n"
    "  parentRefs: [{name: waypoint}]\n"
    "  hostnames: [shop.example]\n"
    "  rules:\n"
    "  - backendRefs: [{name: storefront, port: 80}]\n"
    "    sessionPersistence: {sessionName: s}\n";

/* Refused by the route loader: an unknown path match type (waypoint_proxy.c starts a waypoint
 * with it as its L7 YAML). */
static const char *BROKEN_ROUTE =
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: HTTPRoute\n"
    "metadata: {name: broken, namespace: shop}\n"
    "spec:\n"
    "  rules:\n"
    "  - matches: [{path: {type: Nope}}]\n";

static ambit_route_request route_req(const char *service, const char *path,
                                     const ambit_header *headers, size_t n, uint64_t seed) {
    ambit_route_request r;
    memset(&r, 0, sizeof r);
    r.service_namespace = str("shop");
    r.service_name = str(service);
    r.port = 9080;
    r.waypoint_namespace = none();
    r.waypoint_name = none();
    r.authority = none();
    r.method = str("GET");
    r.path = str(path);
    r.headers = headers;
    r.headers_len = n;
    r.seed = seed;
    return r;
}

/* Decides and returns the decision (the caller frees it), or NULL on error. */
static ambit_route_decision *decide(const ambit_route_table *t, ambit_route_request r) {
    ambit_route_decision *d = NULL;
    if (ambit_route_table_decide(t, &r, &d) != AMBIT_RESULT_OK) return NULL;
    return d;
}

/* ReferenceGrant, consumer routes and CORS through the C ABI. */
static const char *GAMMA_ROUTES =
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: HTTPRoute\n"
    "metadata: {name: cross, namespace: shop}\n"
    "spec:\n"
    "  parentRefs: [{group: \"\", kind: Service, name: reviews, port: 9080}]\n"
    "  rules:\n"
    "  - matches: [{path: {value: /ledger}}]\n"
    "    backendRefs: [{name: ledger, namespace: bank, port: 9080}]\n"
    "  - filters: [{type: CORS, cors: {allowOrigins: [\"https://a.example\"], allowMethods: [GET]}}]\n"
    "    backendRefs: [{name: reviews-v1, port: 9080}]\n"
    "---\n"
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: HTTPRoute\n"
    "metadata: {name: mine, namespace: cart}\n"
    "spec:\n"
    "  parentRefs: [{group: \"\", kind: Service, name: reviews, namespace: shop, port: 9080}]\n"
    "  rules: [{backendRefs: [{name: reviews, namespace: shop, port: 9080}]}]\n";

static void gateway_api_routes(void) {
    const ambit_route_table *t = NULL;
    ambit_error *err = NULL;
    CHECK(ambit_route_table_from_yaml(S(GAMMA_ROUTES), &t, &err) == AMBIT_RESULT_OK);

    /* A backend in another namespace without a grant: refused, and named. */
    ambit_route_decision *d = decide(t, route_req("reviews", "/ledger", NULL, 0, 1));
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_BACKEND_NOT_PERMITTED);
    CHECK(ambit_route_decision_status(d) == 500);
    CHECK(eq(ambit_route_decision_route(d), "shop/cross"));
    CHECK(eq(ambit_route_decision_backend_namespace(d), "bank"));
    CHECK(eq(ambit_route_decision_backend_name(d), "ledger"));
    ambit_route_decision_free(d);

    /* The consumer route applies to its own namespace's clients only. */
    ambit_route_request r = route_req("reviews", "/", NULL, 0, 1);
    r.client_namespace = str("cart");
    d = decide(t, r);
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_FORWARD);
    CHECK(eq(ambit_route_decision_route(d), "cart/mine"));
    ambit_route_decision_free(d);
    d = decide(t, route_req("reviews", "/", NULL, 0, 1));
    CHECK(eq(ambit_route_decision_route(d), "shop/cross"));
    ambit_route_decision_free(d);

    /* A CORS preflight is answered with its headers as the response edits. */
    ambit_header pre[] = {hdr("origin", "https://a.example"), hdr("access-control-request-method", "GET")};
    r = route_req("reviews", "/", pre, 2, 1);
    r.method = str("OPTIONS");
    d = decide(t, r);
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_PREFLIGHT);
    CHECK(ambit_route_decision_status(d) == 200);
    const ambit_header_edits *edits = NULL;
    ambit_header already[] = {hdr("access-control-allow-origin", "stale")};
    CHECK(ambit_route_decision_response_edits(d, already, 1, &edits) == AMBIT_RESULT_OK);
    ambit_str v;
    CHECK(find_edit(edits, "access-control-allow-origin", &v) >= 0 && eq(v, "https://a.example"));
    CHECK(find_edit(edits, "access-control-allow-methods", &v) >= 0 && eq(v, "GET"));
    ambit_route_decision_free(d);
    ambit_route_table_free(t);
}

static void routes(void) {
    const ambit_route_table *t = NULL;
    ambit_error *err = NULL;
    CHECK(ambit_route_table_from_yaml(S(ROUTES), &t, &err) == AMBIT_RESULT_OK);
    CHECK(t != NULL && err == NULL);
    CHECK(ambit_route_table_len(t) == 3);
    char warn[4096];
    size_t n = 0;
    CHECK(ambit_route_table_warnings(t, (uint8_t *)warn, sizeof warn, &n) == AMBIT_RESULT_OK);
    CHECK(n > 0 && contains(warn, n, "sessionPersistence"));
    CHECK(ambit_route_table_warnings(t, (uint8_t *)warn, 2, &n) == AMBIT_RESULT_INSUFFICIENT_SIZE && n > 2);

    /* A header match. */
    ambit_header beta[] = {hdr("X-Feature", "beta")};
    ambit_route_decision *d = decide(t, route_req("reviews", "/", beta, 1, 1));
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_FORWARD);
    CHECK(eq(ambit_route_decision_backend_name(d), "reviews-beta"));
    CHECK(eq(ambit_route_decision_backend_namespace(d), "shop"));
    CHECK(ambit_route_decision_backend_port(d) == 9080);
    CHECK(eq(ambit_route_decision_route(d), "shop/reviews"));
    CHECK(ambit_route_decision_status(d) == 0);
    CHECK(ambit_header_edits_len(ambit_route_decision_request_edits(d)) == 0);
    ambit_route_decision_free(d);

    /* The weighted split: deterministic per seed, about 10% to v2 over many seeds. */
    int v2 = 0;
    for (uint64_t seed = 0; seed < 2000; seed++) {
        d = decide(t, route_req("reviews", "/books", NULL, 0, seed));
        if (eq(ambit_route_decision_backend_name(d), "reviews-v2")) v2++;
        ambit_route_decision_free(d);
    }
    CHECK(v2 > 120 && v2 < 280);
    for (uint64_t seed = 0; seed < 50; seed++) {
        ambit_route_decision *a = decide(t, route_req("reviews", "/books", NULL, 0, seed));
        ambit_route_decision *b = decide(t, route_req("reviews", "/books", NULL, 0, seed));
        ambit_str x = ambit_route_decision_backend_name(a), y = ambit_route_decision_backend_name(b);
        CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
        ambit_route_decision_free(a);
        ambit_route_decision_free(b);
    }

    /* A redirect with the host from the filter and the prefix replaced. */
    ambit_header host[] = {hdr("host", "reviews.shop:9080")};
    d = decide(t, route_req("reviews", "/old/page?x=1", host, 1, 1));
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_REDIRECT);
    CHECK(ambit_route_decision_status(d) == 301);
    CHECK(eq(ambit_route_decision_location(d), "http://new.example:9080/new/page?x=1"));
    CHECK(eq(ambit_route_decision_backend_name(d), ""));
    ambit_route_decision_free(d);

    /* Rewrite, header edits, response edits, mirror, limits. */
    ambit_header in[] = {hdr("host", "reviews"), hdr("x-secret", "s3"), hdr("x-tag", "one"),
                         hdr("accept", "*/*")};
    d = decide(t, route_req("reviews", "/api/items?page=2", in, 4, 1));
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_FORWARD);
    CHECK(eq(ambit_route_decision_backend_name(d), "reviews-api"));
    CHECK(ambit_route_decision_backend_port(d) == 8080);
    CHECK(eq(ambit_route_decision_path(d), "/v2/items?page=2"));
    CHECK(eq(ambit_route_decision_authority(d), ""));
    const ambit_header_edits *edits = ambit_route_decision_request_edits(d);
    ambit_str v;
    CHECK(find_edit(edits, "x-secret", &v) == AMBIT_HEADER_OP_REMOVE && v.len == 0);
    CHECK(find_edit(edits, "x-routed", &v) == AMBIT_HEADER_OP_SET && eq(v, "api"));
    CHECK(find_edit(edits, "x-tag", &v) == AMBIT_HEADER_OP_SET && eq(v, "one"));
    CHECK(find_edit(edits, "accept", &v) == -1);
    CHECK(find_edit(edits, "host", &v) == -1);
    /* x-tag keeps "one" and gains "two": SET one, APPEND two. */
    {
        int appended = 0;
        for (size_t i = 0; i < ambit_header_edits_len(edits); i++) {
            ambit_header_op op;
            ambit_str nm, val;
            CHECK(ambit_header_edits_get(edits, i, &op, &nm, &val) == AMBIT_RESULT_OK);
            if (eq(nm, "x-tag") && op == AMBIT_HEADER_OP_APPEND && eq(val, "two")) appended = 1;
        }
        CHECK(appended);
    }
    ambit_header_op op;
    ambit_str nm, val;
    CHECK(ambit_header_edits_get(edits, 99, &op, &nm, &val) == AMBIT_RESULT_NOT_FOUND);
    ambit_header resp[] = {hdr("server", "envoy"), hdr("content-type", "text/plain")};
    const ambit_header_edits *re = NULL;
    CHECK(ambit_route_decision_response_edits(d, resp, 2, &re) == AMBIT_RESULT_OK);
    CHECK(find_edit(re, "server", &v) == AMBIT_HEADER_OP_REMOVE);
    CHECK(find_edit(re, "x-served-by", &v) == AMBIT_HEADER_OP_SET && eq(v, "reviews-api"));
    CHECK(find_edit(re, "content-type", &v) == -1);
    /* The list lives in the decision (never freed by us); the next call replaces it. */
    ambit_header no_server[] = {hdr("content-type", "text/plain")};
    CHECK(ambit_route_decision_response_edits(d, no_server, 1, &re) == AMBIT_RESULT_OK);
    CHECK(find_edit(re, "server", &v) == -1);
    CHECK(find_edit(re, "x-served-by", &v) == AMBIT_HEADER_OP_SET && eq(v, "reviews-api"));
    CHECK(ambit_route_decision_mirror_count(d) == 1);
    ambit_str mns, mname;
    uint16_t mport = 0;
    CHECK(ambit_route_decision_mirror(d, 0, &mns, &mname, &mport) == AMBIT_RESULT_OK);
    CHECK(eq(mns, "shop") && eq(mname, "reviews-shadow") && mport == 9090);
    CHECK(ambit_route_decision_mirror(d, 1, &mns, &mname, &mport) == AMBIT_RESULT_NOT_FOUND);
    ambit_route_limits lim;
    CHECK(ambit_route_decision_limits(d, &lim) == AMBIT_RESULT_OK);
    CHECK(lim.request_timeout_ms == 10000 && lim.backend_request_timeout_ms == 2000);
    CHECK(lim.retry_attempts == 3 && lim.retry_backoff_ms == 100 && lim.delay_ms == 0);
    CHECK(ambit_route_decision_retries_status(d, 503));
    CHECK(!ambit_route_decision_retries_status(d, 500));
    CHECK(!ambit_route_decision_retries_status(d, 42));
    ambit_route_decision_free(d);

    /* HTTP/2: the authority is given, and kept. */
    ambit_route_request h2 = route_req("reviews", "/api/x", NULL, 0, 1);
    h2.authority = str("reviews.shop:9080");
    d = decide(t, h2);
    CHECK(eq(ambit_route_decision_authority(d), "reviews.shop:9080"));
    CHECK(eq(ambit_route_decision_path(d), "/v2/x"));
    ambit_route_decision_free(d);

    /* Fault: abort after the delay. */
    d = decide(t, route_req("reviews", "/flaky", NULL, 0, 1));
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_ABORT);
    CHECK(ambit_route_decision_status(d) == 503);
    CHECK(ambit_route_decision_limits(d, &lim) == AMBIT_RESULT_OK && lim.delay_ms == 250);
    ambit_route_decision_free(d);

    /* Rate limit: one token, then 429. */
    d = decide(t, route_req("reviews", "/limited", NULL, 0, 1));
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_FORWARD);
    ambit_route_decision_free(d);
    d = decide(t, route_req("reviews", "/limited", NULL, 0, 1));
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_RATE_LIMITED);
    CHECK(ambit_route_decision_status(d) == 429);
    ambit_route_decision_free(d);

    /* All weights 0: 500. */
    d = decide(t, route_req("reviews", "/nowhere", NULL, 0, 1));
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_NO_BACKEND);
    CHECK(ambit_route_decision_status(d) == 500);
    ambit_route_decision_free(d);

    /* Routes exist but no rule matches: 404. No route at all: unrouted. */
    d = decide(t, route_req("ratings", "/other", NULL, 0, 1));
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_NOT_FOUND);
    CHECK(ambit_route_decision_status(d) == 404);
    ambit_route_decision_free(d);
    d = decide(t, route_req("details", "/", NULL, 0, 1));
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_UNROUTED);
    CHECK(ambit_route_decision_status(d) == 0);
    CHECK(eq(ambit_route_decision_path(d), "/"));
    ambit_route_decision_free(d);

    /* Attached to the waypoint, by hostname. */
    ambit_header shop_host[] = {hdr("host", "shop.example")};
    ambit_route_request w = route_req("details", "/cart", shop_host, 1, 1);
    w.waypoint_namespace = str("shop");
    w.waypoint_name = str("waypoint");
    d = decide(t, w);
    CHECK(ambit_route_decision_kind(d) == AMBIT_ROUTE_KIND_FORWARD);
    CHECK(eq(ambit_route_decision_backend_name(d), "storefront"));
    CHECK(eq(ambit_route_decision_route(d), "shop/by-host"));
    ambit_route_decision_free(d);

    /* The table may go first: decisions keep what they need. */
    d = decide(t, route_req("reviews", "/api/late", NULL, 0, 1));
    ambit_route_table_free(t);
    CHECK(eq(ambit_route_decision_path(d), "/v2/late"));
    CHECK(eq(ambit_route_decision_backend_name(d), "reviews-api"));
    ambit_route_decision_free(d);

    /* Garbage YAML: an error naming the object and field. */
    CHECK(ambit_route_table_from_yaml(S("kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\n"
                                        "metadata: {name: r, namespace: shop}\nspec: {rules: 7}\n"),
                                      &t, &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(err != NULL && ambit_error_code(err) == AMBIT_RESULT_CONFIG_INVALID);
    char msg[512];
    CHECK(ambit_error_message(err, (uint8_t *)msg, sizeof msg, &n) == AMBIT_RESULT_OK);
    CHECK(n > 0 && contains(msg, n, "shop/r"));
    ambit_error_free(err);
    err = NULL;
    /* Where: the file the loader names ("<l7>", as the waypoint names its L7 YAML), the
     * object and the field. */
    CHECK(ambit_route_table_from_yaml(S(BROKEN_ROUTE), &t, &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(err != NULL && ambit_error_code(err) == AMBIT_RESULT_CONFIG_INVALID);
    ambit_str file = {0}, object = {0}, field = {0};
    CHECK(ambit_error_location(err, &file, &object, &field) == AMBIT_RESULT_OK);
    CHECK(eq(file, "<l7>"));
    CHECK(eq(object, "HTTPRoute shop/broken"));
    CHECK(eq(field, "spec.rules[0].matches[0].path.type"));
    ambit_error_free(err);
    err = NULL;
    CHECK(ambit_route_table_from_yaml(S(": : :\n\t- ["), &t, NULL) == AMBIT_RESULT_CONFIG_INVALID);
    const uint8_t bad_utf8[] = {'k', 0xff};
    CHECK(ambit_route_table_from_yaml(SN(bad_utf8, sizeof bad_utf8), &t, NULL) == AMBIT_RESULT_INVALID_PARAMETER);
}

static void route_misuse(void) {
    const ambit_route_table *t = NULL;
    CHECK(ambit_route_table_from_yaml(S(ROUTES), &t, NULL) == AMBIT_RESULT_OK);
    ambit_route_decision *d = NULL;
    ambit_route_request r = route_req("reviews", "/", NULL, 0, 1);

    /* Invalid input: codes, and nothing written. */
    ambit_route_request bad = r;
    bad.method = str("GE T");
    CHECK(ambit_route_table_decide(t, &bad, &d) == AMBIT_RESULT_INVALID_PARAMETER && d == NULL);
    bad = r;
    bad.path = str("no-slash");
    CHECK(ambit_route_table_decide(t, &bad, &d) == AMBIT_RESULT_INVALID_PARAMETER && d == NULL);
    bad = r;
    bad.waypoint_namespace = str("shop");
    CHECK(ambit_route_table_decide(t, &bad, &d) == AMBIT_RESULT_INVALID_PARAMETER && d == NULL);
    ambit_header bad_name[] = {hdr("bad header", "v")};
    bad = route_req("reviews", "/", bad_name, 1, 1);
    CHECK(ambit_route_table_decide(t, &bad, &d) == AMBIT_RESULT_INVALID_PARAMETER && d == NULL);
    ambit_header bad_value[] = {hdr("x", "line\nbreak")};
    bad = route_req("reviews", "/", bad_value, 1, 1);
    CHECK(ambit_route_table_decide(t, &bad, &d) == AMBIT_RESULT_INVALID_PARAMETER && d == NULL);
    bad = route_req("reviews", "/", NULL, 3, 1);
    CHECK(ambit_route_table_decide(t, &bad, &d) == AMBIT_RESULT_NULL_PARAMETER && d == NULL);
    ambit_header null_name[] = {{{NULL, 4}, {(const uint8_t *)"v", 1}}};
    bad = route_req("reviews", "/", null_name, 1, 1);
    CHECK(ambit_route_table_decide(t, &bad, &d) == AMBIT_RESULT_NULL_PARAMETER && d == NULL);
    const uint8_t bad_utf8[] = {'r', 0xc3};
    bad = r;
    bad.service_name.data = bad_utf8;
    bad.service_name.len = sizeof bad_utf8;
    CHECK(ambit_route_table_decide(t, &bad, &d) == AMBIT_RESULT_INVALID_PARAMETER && d == NULL);

    /* NULL for every pointer parameter. */
    CHECK(ambit_route_table_from_yaml(SN(NULL, 5), &t, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_route_table_from_yaml(S(ROUTES), NULL, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_route_table_decide(NULL, &r, &d) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_route_table_decide(t, NULL, &d) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_route_table_decide(t, &r, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    char buf[16];
    size_t n;
    CHECK(ambit_route_table_warnings(NULL, (uint8_t *)buf, sizeof buf, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_route_table_warnings(t, (uint8_t *)buf, sizeof buf, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_route_table_len(NULL) == 0);

    /* Getters on NULL: documented defaults; misuse fails closed. */
    CHECK(ambit_route_decision_kind(NULL) == AMBIT_ROUTE_KIND_NO_BACKEND);
    CHECK(ambit_route_decision_status(NULL) == 500);
    CHECK(ambit_route_decision_backend_port(NULL) == 0);
    CHECK(ambit_route_decision_backend_name(NULL).data == NULL);
    CHECK(ambit_route_decision_backend_namespace(NULL).data == NULL);
    CHECK(ambit_route_decision_route(NULL).data == NULL);
    CHECK(ambit_route_decision_location(NULL).data == NULL);
    CHECK(ambit_route_decision_path(NULL).data == NULL);
    CHECK(ambit_route_decision_authority(NULL).data == NULL);
    CHECK(ambit_route_decision_request_edits(NULL) == NULL);
    CHECK(ambit_route_decision_mirror_count(NULL) == 0);
    CHECK(!ambit_route_decision_retries_status(NULL, 503));
    const ambit_header_edits *re = NULL;
    CHECK(ambit_route_decision_response_edits(NULL, NULL, 0, &re) == AMBIT_RESULT_NULL_PARAMETER);
    ambit_route_limits lim;
    CHECK(ambit_route_decision_limits(NULL, &lim) == AMBIT_RESULT_NULL_PARAMETER);
    ambit_str a, b;
    uint16_t port;
    CHECK(ambit_route_decision_mirror(NULL, 0, &a, &b, &port) == AMBIT_RESULT_NULL_PARAMETER);

    CHECK(ambit_route_table_decide(t, &r, &d) == AMBIT_RESULT_OK);
    CHECK(ambit_route_decision_response_edits(d, NULL, 0, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_route_decision_response_edits(d, NULL, 2, &re) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_route_decision_limits(d, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_route_decision_mirror(d, 0, NULL, &b, &port) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_route_decision_mirror(d, 0, &a, NULL, &port) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_route_decision_mirror(d, 0, &a, &b, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    /* Not a FORWARD with edits: an empty response list (borrowed from the decision). */
    CHECK(ambit_route_decision_response_edits(d, NULL, 0, &re) == AMBIT_RESULT_OK);
    CHECK(re != NULL && ambit_header_edits_len(re) == 0);
    ambit_route_decision_free(d);

    ambit_header_op op;
    CHECK(ambit_header_edits_len(NULL) == 0);
    CHECK(ambit_header_edits_get(NULL, 0, &op, &a, &b) == AMBIT_RESULT_NULL_PARAMETER);
    ambit_header with_secret[] = {hdr("x-secret", "s")};
    d = decide(t, route_req("reviews", "/api/x", with_secret, 1, 1));
    const ambit_header_edits *edits = ambit_route_decision_request_edits(d);
    CHECK(ambit_header_edits_len(edits) > 0);
    CHECK(ambit_header_edits_get(edits, 0, NULL, &a, &b) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_header_edits_get(edits, 0, &op, NULL, &b) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_header_edits_get(edits, 0, &op, &a, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_header_edits_get(edits, 0, &op, &a, &b) == AMBIT_RESULT_OK);
    ambit_route_decision_free(d);
    ambit_route_table_free(t);
}

/* ============================== JWT ============================== */

static const char *AUTHN =
    "apiVersion: security.istio.io/v1\n"
    "kind: RequestAuthentication\n"
    "metadata: {name: jwt, namespace: shop}\n"
    "spec:\n"
    "  targetRefs: [{kind: Service, group: \"\", name: cart}]\n"
    "  jwtRules:\n"
    "  - issuer: https://issuer.example\n"
    "    jwksUri: https://issuer.example/jwks\n"
    "    timeout: 2s\n"
    "    fromHeaders: [{name: authorization, prefix: \"Bearer \"}]\n"
    "    fromParams: [access_token]\n"
    "    outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]\n";

static ambit_waypoint_target cart_target(void) {
    ambit_waypoint_target t = {str("shop"), str("waypoint"), str("shop"), str("cart")};
    return t;
}

/* Authenticates with `Authorization: Bearer <token>` (or no header for NULL). */
static ambit_authn_result *authn(const ambit_authenticators *a, const char *token,
                                 const char *path, uint64_t now) {
    static char value[8192];
    ambit_header h[2];
    size_t n = 0;
    h[n++] = hdr("x-jwt-sub", "forged");
    if (token) {
        snprintf(value, sizeof value, "Bearer %s", token);
        h[n++] = hdr("authorization", value);
    }
    ambit_waypoint_target t = cart_target();
    ambit_authn_result *r = NULL;
    if (ambit_authenticators_authenticate(a, &t, h, n, S(path), now, &r) != AMBIT_RESULT_OK) return NULL;
    return r;
}

static const ambit_authenticators *jwt(const char *dir, uint64_t now) {
    char *jwks = slurp(dir, "jwks.json");
    char *valid = slurp(dir, "valid.jwt");
    char *expired = slurp(dir, "expired.jwt");
    char *alg_none = slurp(dir, "none.jwt");
    char *badsig = slurp(dir, "badsig.jwt");

    const ambit_authenticators *a = NULL;
    ambit_error *err = NULL;
    CHECK(ambit_authenticators_from_yaml(S(AUTHN), &a, &err) == AMBIT_RESULT_OK && err == NULL);
    CHECK(ambit_authenticators_len(a) == 1);
    char buf[256];
    size_t n = 0;
    CHECK(ambit_authenticators_warnings(a, (uint8_t *)buf, sizeof buf, &n) == AMBIT_RESULT_OK && n == 0);

    /* The key set to fetch. */
    CHECK(ambit_authenticators_jwks_uri_count(a) == 1);
    uint64_t timeout_ms = 0;
    bool openid = true;
    CHECK(ambit_authenticators_jwks_uri(a, 0, (uint8_t *)buf, sizeof buf, &n, &timeout_ms, &openid) == AMBIT_RESULT_OK);
    CHECK(n == strlen("https://issuer.example/jwks") && memcmp(buf, "https://issuer.example/jwks", n) == 0);
    CHECK(timeout_ms == 2000 && !openid);
    CHECK(ambit_authenticators_jwks_uri(a, 0, (uint8_t *)buf, 4, &n, &timeout_ms, &openid) == AMBIT_RESULT_INSUFFICIENT_SIZE);
    CHECK(ambit_authenticators_jwks_uri(a, 1, (uint8_t *)buf, sizeof buf, &n, &timeout_ms, &openid) == AMBIT_RESULT_NOT_FOUND);

    /* Not fetched yet: tokens are refused. */
    ambit_authn_result *r = authn(a, valid, "/items", now);
    CHECK(ambit_authn_result_outcome(r) == AMBIT_AUTHN_OUTCOME_DENIED);
    CHECK(eq(ambit_authn_result_reason(r), "Jwks remote fetch is failed"));
    ambit_authn_result_free(r);

    /* Installing key sets. */
    size_t keys = 0;
    CHECK(ambit_authenticators_set_jwks(a, S("https://other.example/jwks"), S(jwks), &keys, &err) == AMBIT_RESULT_JWKS_UNKNOWN_URI);
    CHECK(err != NULL && ambit_error_code(err) == AMBIT_RESULT_JWKS_UNKNOWN_URI);
    ambit_error_free(err);
    err = NULL;
    CHECK(ambit_authenticators_set_jwks(a, S("https://issuer.example/jwks"), S("{\"keys\": 3}"), &keys, &err) == AMBIT_RESULT_JWKS_INVALID);
    CHECK(err != NULL && ambit_error_code(err) == AMBIT_RESULT_JWKS_INVALID);
    ambit_error_free(err);
    err = NULL;
    CHECK(ambit_authenticators_set_jwks(a, S("https://issuer.example/jwks"), S(jwks), &keys, &err) == AMBIT_RESULT_OK);
    CHECK(keys == 1 && err == NULL);

    /* A valid ES256 token. */
    r = authn(a, valid, "/items?x=1", now);
    CHECK(ambit_authn_result_outcome(r) == AMBIT_AUTHN_OUTCOME_AUTHENTICATED);
    CHECK(eq(ambit_authn_result_principal(r), "https://issuer.example/alice"));
    CHECK(eq(ambit_authn_result_reason(r), ""));
    CHECK(eq(ambit_authn_result_path(r), "/items?x=1"));
    char claim[256];
    CHECK(ambit_authn_result_claim(r, S("sub"), (uint8_t *)claim, sizeof claim, &n) == AMBIT_RESULT_OK);
    CHECK(n == 7 && memcmp(claim, "\"alice\"", 7) == 0);
    CHECK(ambit_authn_result_claim(r, S("realm.role"), (uint8_t *)claim, sizeof claim, &n) == AMBIT_RESULT_OK);
    CHECK(n == 7 && memcmp(claim, "\"admin\"", 7) == 0);
    CHECK(ambit_authn_result_claim(r, S("realm"), (uint8_t *)claim, sizeof claim, &n) == AMBIT_RESULT_OK);
    CHECK(n > 0 && claim[0] == '{');
    CHECK(ambit_authn_result_claim(r, S("level"), (uint8_t *)claim, sizeof claim, &n) == AMBIT_RESULT_OK);
    CHECK(n == 1 && claim[0] == '3');
    CHECK(ambit_authn_result_claim(r, S("realm.missing"), (uint8_t *)claim, sizeof claim, &n) == AMBIT_RESULT_NOT_FOUND);
    CHECK(ambit_authn_result_claim(r, S("sub"), (uint8_t *)claim, 3, &n) == AMBIT_RESULT_INSUFFICIENT_SIZE && n == 7);
    const ambit_header_edits *edits = ambit_authn_result_edits(r);
    ambit_str v;
    CHECK(find_edit(edits, "authorization", &v) == AMBIT_HEADER_OP_REMOVE);
    CHECK(find_edit(edits, "x-jwt-sub", &v) == AMBIT_HEADER_OP_SET && eq(v, "alice"));
    ambit_authn_result_free(r);

    /* The token in a query parameter: removed from the path to forward. */
    {
        static char path[8192];
        snprintf(path, sizeof path, "/items?access_token=%s&page=2", valid);
        r = authn(a, NULL, path, now);
        CHECK(ambit_authn_result_outcome(r) == AMBIT_AUTHN_OUTCOME_AUTHENTICATED);
        CHECK(eq(ambit_authn_result_path(r), "/items?page=2"));
        ambit_authn_result_free(r);
    }

    /* No token: anonymous, and the forged output header is stripped. */
    r = authn(a, NULL, "/items", now);
    CHECK(ambit_authn_result_outcome(r) == AMBIT_AUTHN_OUTCOME_ANONYMOUS);
    CHECK(eq(ambit_authn_result_principal(r), ""));
    CHECK(find_edit(ambit_authn_result_edits(r), "x-jwt-sub", &v) == AMBIT_HEADER_OP_REMOVE);
    CHECK(ambit_authn_result_claim(r, S("sub"), (uint8_t *)claim, sizeof claim, &n) == AMBIT_RESULT_NOT_FOUND);
    ambit_authn_result_free(r);

    /* Refused tokens: expired, alg none, a bad signature; and a valid one used too late. */
    r = authn(a, expired, "/items", now);
    CHECK(ambit_authn_result_outcome(r) == AMBIT_AUTHN_OUTCOME_DENIED);
    CHECK(eq(ambit_authn_result_reason(r), "Jwt is expired"));
    CHECK(ambit_header_edits_len(ambit_authn_result_edits(r)) == 0);
    ambit_authn_result_free(r);
    r = authn(a, alg_none, "/items", now);
    CHECK(ambit_authn_result_outcome(r) == AMBIT_AUTHN_OUTCOME_DENIED);
    CHECK(eq(ambit_authn_result_reason(r), "Jwt header [alg] is not supported"));
    ambit_authn_result_free(r);
    r = authn(a, badsig, "/items", now);
    CHECK(ambit_authn_result_outcome(r) == AMBIT_AUTHN_OUTCOME_DENIED);
    CHECK(eq(ambit_authn_result_reason(r), "Jwt verification fails"));
    ambit_authn_result_free(r);
    r = authn(a, valid, "/items", now + 7 * 24 * 3600);
    CHECK(ambit_authn_result_outcome(r) == AMBIT_AUTHN_OUTCOME_DENIED);
    CHECK(eq(ambit_authn_result_reason(r), "Jwt is expired"));
    ambit_authn_result_free(r);
    r = authn(a, "not.a-token", "/items", now);
    CHECK(ambit_authn_result_outcome(r) == AMBIT_AUTHN_OUTCOME_DENIED);
    ambit_authn_result_free(r);

    /* Another service: no rule applies, so even a bad token is anonymous. */
    {
        ambit_waypoint_target t = {str("shop"), str("waypoint"), str("shop"), str("other")};
        char value[8192];
        snprintf(value, sizeof value, "Bearer %s", badsig);
        ambit_header h[] = {hdr("authorization", value)};
        r = NULL;
        CHECK(ambit_authenticators_authenticate(a, &t, h, 1, S("/"), now, &r) == AMBIT_RESULT_OK);
        CHECK(ambit_authn_result_outcome(r) == AMBIT_AUTHN_OUTCOME_ANONYMOUS);
        ambit_authn_result_free(r);
    }

    /* OpenID discovery. */
    CHECK(ambit_jwks_uri_from_openid_configuration(S("{\"issuer\":\"i\",\"jwks_uri\":\"https://i/keys\"}"),
                                                   (uint8_t *)buf, sizeof buf, &n, NULL) == AMBIT_RESULT_OK);
    CHECK(n == strlen("https://i/keys") && memcmp(buf, "https://i/keys", n) == 0);
    CHECK(ambit_jwks_uri_from_openid_configuration(S("{\"issuer\":\"i\"}"), (uint8_t *)buf, sizeof buf, &n, &err) == AMBIT_RESULT_JWKS_INVALID);
    CHECK(err != NULL);
    ambit_error_free(err);
    err = NULL;

    /* Garbage config. */
    const ambit_authenticators *bad = NULL;
    CHECK(ambit_authenticators_from_yaml(S("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
                                           "metadata: {name: j, namespace: shop}\nspec: {jwtRules: [{issuer: 5, jwks: nope}]}\n"),
                                         &bad, &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(bad == NULL && err != NULL);
    ambit_error_free(err);

    free(jwks);
    free(expired);
    free(alg_none);
    free(badsig);
    free(valid);
    return a;
}

static void jwt_misuse(const ambit_authenticators *a) {
    ambit_waypoint_target t = cart_target();
    ambit_authn_result *r = NULL;
    char buf[64];
    size_t n;
    size_t keys;
    uint64_t ms;
    bool b;
    const ambit_authenticators *out = NULL;
    CHECK(ambit_authenticators_from_yaml(SN(NULL, 3), &out, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_from_yaml(S(AUTHN), NULL, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_len(NULL) == 0);
    CHECK(ambit_authenticators_jwks_uri_count(NULL) == 0);
    CHECK(ambit_authenticators_warnings(NULL, (uint8_t *)buf, sizeof buf, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_warnings(a, (uint8_t *)buf, sizeof buf, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_jwks_uri(NULL, 0, (uint8_t *)buf, sizeof buf, &n, &ms, &b) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_jwks_uri(a, 0, (uint8_t *)buf, sizeof buf, NULL, &ms, &b) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_jwks_uri(a, 0, (uint8_t *)buf, sizeof buf, &n, NULL, &b) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_jwks_uri(a, 0, (uint8_t *)buf, sizeof buf, &n, &ms, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_set_jwks(NULL, S("u"), S("{}"), &keys, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_set_jwks(a, SN(NULL, 1), S("{}"), &keys, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_set_jwks(a, S("u"), SN(NULL, 2), &keys, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_set_jwks(a, S("u"), S("{}"), NULL, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_jwks_uri_from_openid_configuration(SN(NULL, 2), (uint8_t *)buf, sizeof buf, &n, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_jwks_uri_from_openid_configuration(S("{}"), (uint8_t *)buf, sizeof buf, NULL, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_authenticate(NULL, &t, NULL, 0, S("/"), 1, &r) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_authenticate(a, NULL, NULL, 0, S("/"), 1, &r) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_authenticate(a, &t, NULL, 1, S("/"), 1, &r) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_authenticate(a, &t, NULL, 0, SN(NULL, 1), 1, &r) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_authenticate(a, &t, NULL, 0, S("/"), 1, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(r == NULL);
    ambit_waypoint_target half = {str("shop"), str("waypoint"), str("shop"), none()};
    CHECK(ambit_authenticators_authenticate(a, &half, NULL, 0, S("/"), 1, &r) == AMBIT_RESULT_INVALID_PARAMETER);
    ambit_waypoint_target no_ns = {{NULL, 4}, str("waypoint"), none(), none()};
    CHECK(ambit_authenticators_authenticate(a, &no_ns, NULL, 0, S("/"), 1, &r) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(r == NULL);
    CHECK(ambit_authn_result_outcome(NULL) == AMBIT_AUTHN_OUTCOME_DENIED);
    CHECK(ambit_authn_result_principal(NULL).data == NULL);
    CHECK(ambit_authn_result_reason(NULL).data == NULL);
    CHECK(ambit_authn_result_path(NULL).data == NULL);
    CHECK(ambit_authn_result_edits(NULL) == NULL);
    CHECK(ambit_authn_result_claim(NULL, S("sub"), (uint8_t *)buf, sizeof buf, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authenticators_authenticate(a, &t, NULL, 0, S("/"), 1, &r) == AMBIT_RESULT_OK);
    CHECK(ambit_authn_result_claim(r, SN(NULL, 3), (uint8_t *)buf, sizeof buf, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_authn_result_claim(r, S("sub"), (uint8_t *)buf, sizeof buf, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    ambit_authn_result_free(r);
}

/* ============================== L7 authorization ============================== */

static const char *L7 =
    "apiVersion: security.istio.io/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: cart-readers, namespace: shop}\n"
    "spec:\n"
    "  targetRefs: [{kind: Service, group: \"\", name: cart}]\n"
    "  rules:\n"
    "  - from: [{source: {principals: [cluster.local/ns/shop/sa/frontend]}}]\n"
    "    to: [{operation: {methods: [GET], paths: [\"/items/{*}\"]}}]\n"
    "  - from: [{source: {requestPrincipals: [https://issuer.example/alice]}}]\n"
    "    to: [{operation: {methods: [POST]}}]\n"
    "    when: [{key: \"request.auth.claims[realm][role]\", values: [admin]}]\n"
    "---\n"
    "apiVersion: security.istio.io/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: no-delete, namespace: shop}\n"
    "spec:\n"
    "  targetRefs: [{kind: Service, group: \"\", name: cart}]\n"
    "  action: DENY\n"
    "  rules:\n"
    "  - to: [{operation: {methods: [DELETE]}}]\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: ConfigMap\n"
    "metadata: {name: stray, namespace: shop}\n";

static ambit_http_request http_req(const ambit_spiffe_id *id, const char *method, const char *path,
                                   const ambit_authn_result *authn_result) {
    ambit_http_request r;
    memset(&r, 0, sizeof r);
    r.source_id = id;
    r.source.family = 4;
    r.source.ip[0] = 10; r.source.ip[3] = 1;
    r.destination.family = 4;
    r.destination.ip[0] = 10; r.destination.ip[1] = 96; r.destination.ip[3] = 10;
    r.destination.port = 80;
    r.host = str("cart.shop.svc.cluster.local");
    r.method = str(method);
    r.path = str(path);
    r.authn = authn_result;
    r.sni = none();
    return r;
}

static void l7(const char *dir, uint64_t now, const ambit_authenticators *authenticators) {
    const ambit_l7_policies *p = NULL;
    ambit_error *err = NULL;
    CHECK(ambit_l7_policies_from_yaml(S(L7), &p, &err) == AMBIT_RESULT_OK && err == NULL);
    CHECK(ambit_l7_policies_len(p) == 2);
    char warn[1024];
    size_t n = 0;
    CHECK(ambit_l7_policies_warnings(p, (uint8_t *)warn, sizeof warn, &n) == AMBIT_RESULT_OK);
    CHECK(n > 0 && contains(warn, n, "ConfigMap"));

    const ambit_spiffe_id *frontend = NULL, *other = NULL;
    CHECK(ambit_spiffe_id_new(S("spiffe://cluster.local/ns/shop/sa/frontend"), &frontend) == AMBIT_RESULT_OK);
    CHECK(ambit_spiffe_id_new(S("spiffe://cluster.local/ns/shop/sa/other"), &other) == AMBIT_RESULT_OK);
    ambit_waypoint_target t = cart_target();
    bool allowed = false;
    ambit_l7_reason reason = AMBIT_L7_REASON_DENIED_BY_POLICY;
    char policy[64];

    ambit_http_request r = http_req(frontend, "GET", "/items/42?verbose=1", NULL);
    CHECK(ambit_l7_policies_decide(p, &t, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(allowed && reason == AMBIT_L7_REASON_ALLOWED_BY_POLICY);
    CHECK(n == strlen("shop/cart-readers") && memcmp(policy, "shop/cart-readers", n) == 0);

    /* The path is normalized before matching. */
    r = http_req(frontend, "GET", "/items/./7", NULL);
    CHECK(ambit_l7_policies_decide(p, &t, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(allowed);

    r = http_req(frontend, "GET", "/admin", NULL);
    CHECK(ambit_l7_policies_decide(p, &t, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(!allowed && reason == AMBIT_L7_REASON_NO_ALLOW_MATCHED && n == 0);

    r = http_req(other, "GET", "/items/1", NULL);
    CHECK(ambit_l7_policies_decide(p, &t, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(!allowed);

    r = http_req(NULL, "GET", "/items/1", NULL);
    CHECK(ambit_l7_policies_decide(p, &t, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(!allowed);

    r = http_req(frontend, "DELETE", "/items/1", NULL);
    CHECK(ambit_l7_policies_decide(p, &t, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(!allowed && reason == AMBIT_L7_REASON_DENIED_BY_POLICY);
    CHECK(n == strlen("shop/no-delete") && memcmp(policy, "shop/no-delete", n) == 0);

    /* JWT principal and claims: authenticate, then decide with the result. */
    char *valid = slurp(dir, "valid.jwt");
    char bearer[8192];
    snprintf(bearer, sizeof bearer, "Bearer %s", valid);
    ambit_header h[] = {hdr("authorization", bearer)};
    ambit_authn_result *alice = NULL;
    CHECK(ambit_authenticators_authenticate(authenticators, &t, h, 1, S("/orders"), now, &alice) == AMBIT_RESULT_OK);
    CHECK(ambit_authn_result_outcome(alice) == AMBIT_AUTHN_OUTCOME_AUTHENTICATED);
    r = http_req(NULL, "POST", "/orders", alice);
    r.headers = h;
    r.headers_len = 1;
    CHECK(ambit_l7_policies_decide(p, &t, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(allowed && reason == AMBIT_L7_REASON_ALLOWED_BY_POLICY);
    r = http_req(NULL, "POST", "/orders", NULL);
    CHECK(ambit_l7_policies_decide(p, &t, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(!allowed);
    ambit_authn_result_free(alice);
    free(valid);

    /* No policy for this service: allowed, none decided. */
    ambit_waypoint_target elsewhere = {str("shop"), str("waypoint"), none(), none()};
    r = http_req(other, "PUT", "/x", NULL);
    CHECK(ambit_l7_policies_decide(p, &elsewhere, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(allowed && reason == AMBIT_L7_REASON_NO_ALLOW_POLICIES && n == 0);

    /* A short policy buffer: the size needed, and nothing else written. */
    r = http_req(frontend, "GET", "/items/1", NULL);
    bool untouched = false;
    ambit_l7_reason untouched_reason = AMBIT_L7_REASON_DENIED_BY_CUSTOM;
    CHECK(ambit_l7_policies_decide(p, &t, &r, &untouched, &untouched_reason, (uint8_t *)policy, 4, &n) == AMBIT_RESULT_INSUFFICIENT_SIZE);
    CHECK(n == strlen("shop/cart-readers") && !untouched && untouched_reason == AMBIT_L7_REASON_DENIED_BY_CUSTOM);

    /* Misuse. */
    ambit_http_request bad = r;
    bad.source.family = 9;
    CHECK(ambit_l7_policies_decide(p, &t, &bad, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_INVALID_PARAMETER);
    bad = r;
    bad.remote.family = 7;
    CHECK(ambit_l7_policies_decide(p, &t, &bad, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_INVALID_PARAMETER);
    bad = r;
    bad.headers_len = 2;
    CHECK(ambit_l7_policies_decide(p, &t, &bad, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    const uint8_t bad_utf8[] = {0xe2, 0x82};
    bad = r;
    bad.method.data = bad_utf8;
    bad.method.len = sizeof bad_utf8;
    CHECK(ambit_l7_policies_decide(p, &t, &bad, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_l7_policies_decide(NULL, &t, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_l7_policies_decide(p, NULL, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_l7_policies_decide(p, &t, NULL, &allowed, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_l7_policies_decide(p, &t, &r, NULL, &reason, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_l7_policies_decide(p, &t, &r, &allowed, NULL, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_l7_policies_decide(p, &t, &r, &allowed, &reason, (uint8_t *)policy, sizeof policy, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_l7_policies_decide(p, &t, &r, &allowed, &reason, NULL, 64, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_l7_policies_len(NULL) == 0);
    CHECK(ambit_l7_policies_warnings(NULL, (uint8_t *)warn, sizeof warn, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_l7_policies_warnings(p, (uint8_t *)warn, sizeof warn, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    const ambit_l7_policies *q = NULL;
    CHECK(ambit_l7_policies_from_yaml(SN(NULL, 1), &q, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_l7_policies_from_yaml(S(L7), NULL, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_l7_policies_from_yaml(S("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                                        "metadata: {name: x, namespace: shop}\nspec: {action: MAYBE}\n"),
                                      &q, &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(q == NULL && err != NULL);
    ambit_str file = {0}, object = {0}, field = {0};
    CHECK(ambit_error_location(err, &file, &object, &field) == AMBIT_RESULT_OK);
    CHECK(eq(file, "<l7>"));
    CHECK(eq(object, "AuthorizationPolicy shop/x"));
    CHECK(eq(field, "spec.action"));
    ambit_error_free(err);

    ambit_spiffe_id_free(frontend);
    ambit_spiffe_id_free(other);
    ambit_l7_policies_free(p);
}

/* ============================== error locations ============================== */

/* Only configuration errors have a place; the outputs are refused NULL one by one. */
static void error_locations(void) {
    ambit_error *err = NULL;
    CHECK(ambit_spiffe_id_check(S("spiffe://Bad/ns"), &err) == AMBIT_RESULT_INVALID_SPIFFE_ID);
    CHECK(err != NULL);
    ambit_str file = {0}, object = {0}, field = {0};
    CHECK(ambit_error_location(err, &file, &object, &field) == AMBIT_RESULT_NOT_FOUND);
    CHECK(file.data == NULL && object.data == NULL && field.data == NULL); /* untouched */
    ambit_error_free(err);
    err = NULL;
    const ambit_route_table *t = NULL;
    CHECK(ambit_route_table_from_yaml(S(BROKEN_ROUTE), &t, &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(t == NULL && err != NULL);
    CHECK(ambit_error_location(err, NULL, &object, &field) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_error_location(err, &file, NULL, &field) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_error_location(err, &file, &object, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(object.data == NULL);
    ambit_error_free(err);
    CHECK(ambit_error_location(NULL, &file, &object, &field) == AMBIT_RESULT_NULL_PARAMETER);
}

/* ============================== frees ============================== */

static void free_null_is_a_no_op_for_every_type(void) {
    ambit_error_free(NULL);
    ambit_policy_set_free(NULL);
    ambit_spiffe_id_free(NULL);
    ambit_runtime_free(NULL);
    ambit_ca_free(NULL);
    ambit_credentials_free(NULL);
    ambit_hbone_listener_free(NULL);
    ambit_node_options_free(NULL);
    ambit_node_proxy_free(NULL);
    ambit_waypoint_options_free(NULL);
    ambit_waypoint_free(NULL);
    ambit_route_table_free(NULL);
    ambit_route_decision_free(NULL);
    ambit_authenticators_free(NULL);
    ambit_authn_result_free(NULL);
    ambit_l7_policies_free(NULL);
    CHECK(1);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: waypoint DIR NOW\n");
        return 2;
    }
    uint64_t now = strtoull(argv[2], NULL, 10);
    routes();
    gateway_api_routes();
    route_misuse();
    const ambit_authenticators *a = jwt(argv[1], now);
    jwt_misuse(a);
    l7(argv[1], now, a);
    ambit_authenticators_free(a);
    error_locations();
    free_null_is_a_no_op_for_every_type();
    return finish();
}
