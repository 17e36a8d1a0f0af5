/* Exercises every function of ambit.h, including misuse: NULLs, short buffers, bad UTF-8,
 * garbage input. Built with -Wall -Wextra -Wpedantic -Werror, and again with ASan + UBSan.
 *
 *   api CHAIN.pem ROOT.pem EXPIRED.pem OTHER_ROOT.pem
 * Ends with "N passed, 0 failed"; exits 1 if anything failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ambit.h"
#include "check.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    static char bufs[8][16384];
    static int next;
    char *buf = bufs[next++ % 8];
    *len = fread(buf, 1, sizeof bufs[0], f);
    fclose(f);
    return buf;
}

static void version_and_messages(void) {
    CHECK(strcmp(ambit_version(), "0.1.0") == 0);
    char buf[128];
    size_t n = 0;
    CHECK(ambit_result_message(AMBIT_RESULT_CERT_EXPIRED, (uint8_t *)buf, sizeof buf, &n) == AMBIT_RESULT_OK);
    CHECK(n == strlen("certificate expired") && memcmp(buf, "certificate expired", n) == 0);
    CHECK(ambit_result_message(AMBIT_RESULT_CERT_EXPIRED, (uint8_t *)buf, 3, &n) == AMBIT_RESULT_INSUFFICIENT_SIZE);
    CHECK(n == strlen("certificate expired"));
    CHECK(ambit_result_message(AMBIT_RESULT_OK, (uint8_t *)buf, sizeof buf, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_result_message(424242, (uint8_t *)buf, sizeof buf, &n) == AMBIT_RESULT_OK);
    CHECK(memcmp(buf, "unknown result code", n) == 0);
    CHECK(ambit_error_code(NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_error_message(NULL, (uint8_t *)buf, sizeof buf, &n) == AMBIT_RESULT_NULL_PARAMETER);
    ambit_error_free(NULL);
}

static void spiffe_ids(void) {
    const char *id = "spiffe://cluster.local/ns/shop/sa/web";
    CHECK(ambit_spiffe_id_check(S(id), NULL) == AMBIT_RESULT_OK);
    ambit_error *err = NULL;
    CHECK(ambit_spiffe_id_check(S("spiffe://Bad/ns"), &err) == AMBIT_RESULT_INVALID_SPIFFE_ID);
    CHECK(err != NULL && ambit_error_code(err) == AMBIT_RESULT_INVALID_SPIFFE_ID);
    char msg[256];
    size_t n = 0;
    CHECK(ambit_error_message(err, (uint8_t *)msg, sizeof msg, &n) == AMBIT_RESULT_OK);
    CHECK(n > 0 && strstr(msg, "invalid character") != NULL);
    ambit_error_free(err);
    const uint8_t bad_utf8[] = {'s', 'p', 0xff, 0xfe};
    CHECK(ambit_spiffe_id_check(SN(bad_utf8, sizeof bad_utf8), NULL) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_spiffe_id_check(SN(NULL, 5), NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_spiffe_id_check(SN(NULL, 0), NULL) == AMBIT_RESULT_INVALID_SPIFFE_ID);

    char part[64];
    CHECK(ambit_spiffe_id_part(S(id), AMBIT_SPIFFE_ID_PART_KIND_NAMESPACE, (uint8_t *)part, sizeof part, &n) == AMBIT_RESULT_OK);
    CHECK(n == 4 && memcmp(part, "shop", 4) == 0);
    CHECK(ambit_spiffe_id_part(S(id), AMBIT_SPIFFE_ID_PART_KIND_SERVICE_ACCOUNT, (uint8_t *)part, sizeof part, &n) == AMBIT_RESULT_OK);
    CHECK(n == 3 && memcmp(part, "web", 3) == 0);
    CHECK(ambit_spiffe_id_part(S(id), AMBIT_SPIFFE_ID_PART_KIND_TRUST_DOMAIN, (uint8_t *)part, 2, &n) == AMBIT_RESULT_INSUFFICIENT_SIZE);
    CHECK(n == strlen("cluster.local"));
    CHECK(ambit_spiffe_id_part(S(id), AMBIT_SPIFFE_ID_PART_KIND_PRINCIPAL, (uint8_t *)part, sizeof part, &n) == AMBIT_RESULT_OK);
    CHECK(n == strlen(id) - 9 && memcmp(part, id + 9, n) == 0);
    CHECK(ambit_spiffe_id_part(S("spiffe://td/a/b"), AMBIT_SPIFFE_ID_PART_KIND_NAMESPACE, (uint8_t *)part, sizeof part, &n) == AMBIT_RESULT_INVALID_SPIFFE_ID);
    CHECK(ambit_spiffe_id_part(S(id), 99, (uint8_t *)part, sizeof part, &n) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_spiffe_id_part(S(id), 0, (uint8_t *)part, sizeof part, NULL) == AMBIT_RESULT_NULL_PARAMETER);
}

static void chains(char **argv) {
    size_t chain_len, root_len, expired_len, other_len;
    char *chain = slurp(argv[1], &chain_len);
    char *root = slurp(argv[2], &root_len);
    char *expired = slurp(argv[3], &expired_len);
    char *other = slurp(argv[4], &other_len);
    char id[256];
    size_t n = 0;
    ambit_error *err = NULL;
    CHECK(ambit_verify_peer_chain(SN(chain, chain_len), SN(root, root_len), S("cluster.local"),
                                  AMBIT_CERT_USAGE_CLIENT, 0, (uint8_t *)id, sizeof id, &n, &err) == AMBIT_RESULT_OK);
    CHECK(err == NULL);
    CHECK(n == strlen("spiffe://cluster.local/ns/c/sa/client") && memcmp(id, "spiffe://cluster.local/ns/c/sa/client", n) == 0);
    CHECK(ambit_verify_peer_chain(SN(expired, expired_len), SN(root, root_len), S("cluster.local"),
                                  AMBIT_CERT_USAGE_SERVER, 0, (uint8_t *)id, sizeof id, &n, &err) == AMBIT_RESULT_CERT_EXPIRED);
    CHECK(err != NULL && ambit_error_code(err) == AMBIT_RESULT_CERT_EXPIRED);
    ambit_error_free(err);
    err = NULL;
    CHECK(ambit_verify_peer_chain(SN(chain, chain_len), SN(other, other_len), S("cluster.local"),
                                  AMBIT_CERT_USAGE_CLIENT, 0, (uint8_t *)id, sizeof id, &n, NULL) == AMBIT_RESULT_CERT_UNTRUSTED);
    CHECK(ambit_verify_peer_chain(SN(chain, chain_len), SN(root, root_len), S("elsewhere"),
                                  AMBIT_CERT_USAGE_CLIENT, 0, (uint8_t *)id, sizeof id, &n, NULL) == AMBIT_RESULT_CERT_FOREIGN_TRUST_DOMAIN);
    CHECK(ambit_verify_peer_chain(S("garbage"), SN(root, root_len), S("cluster.local"),
                                  AMBIT_CERT_USAGE_CLIENT, 0, (uint8_t *)id, sizeof id, &n, NULL) == AMBIT_RESULT_CERT_MALFORMED);
    /* The chain was valid in 2001? No: not yet valid. */
    CHECK(ambit_verify_peer_chain(SN(chain, chain_len), SN(root, root_len), S("cluster.local"),
                                  AMBIT_CERT_USAGE_CLIENT, 1000000000ULL, (uint8_t *)id, sizeof id, &n, NULL) == AMBIT_RESULT_CERT_NOT_YET_VALID);
    CHECK(ambit_verify_peer_chain(SN(chain, chain_len), SN(root, root_len), S("cluster.local"),
                                  7, 0, (uint8_t *)id, sizeof id, &n, NULL) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_verify_peer_chain(SN(chain, chain_len), SN(root, root_len), S("cluster.local"),
                                  AMBIT_CERT_USAGE_CLIENT, 0, (uint8_t *)id, 4, &n, NULL) == AMBIT_RESULT_INSUFFICIENT_SIZE);
    CHECK(ambit_verify_peer_chain(SN(NULL, 10), SN(root, root_len), S("cluster.local"),
                                  AMBIT_CERT_USAGE_CLIENT, 0, (uint8_t *)id, sizeof id, &n, NULL) == AMBIT_RESULT_NULL_PARAMETER);
}

static void proxy_v2(void) {
    ambit_socket_addr src = {.family = 4, .ip = {10, 0, 0, 1}, .port = 43210};
    ambit_socket_addr dst = {.family = 6, .ip = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, .port = 8080};
    const char *who = "spiffe://cluster.local/ns/a/sa/b";
    uint8_t wire[256];
    size_t n = 0;
    CHECK(ambit_proxy_v2_encode(&src, &dst, S(who), wire, sizeof wire, &n) == AMBIT_RESULT_OK);
    CHECK(n > 16 && memcmp(wire, "\r\n\r\n\0\r\nQUIT\n", 12) == 0);
    size_t needed = 0;
    CHECK(ambit_proxy_v2_encode(&src, &dst, S(who), wire, 10, &needed) == AMBIT_RESULT_INSUFFICIENT_SIZE && needed == n);
    size_t used = 0, id_n = 0;
    ambit_socket_addr s2, d2;
    char id[128];
    CHECK(ambit_proxy_v2_decode(SN(wire, n), &used, &s2, &d2, (uint8_t *)id, sizeof id, &id_n) == AMBIT_RESULT_OK);
    CHECK(used == n && id_n == strlen(who) && memcmp(id, who, id_n) == 0);
    /* Mixed families travel as IPv6 (IPv4-mapped). */
    CHECK(s2.family == 6 && s2.ip[10] == 0xff && s2.ip[12] == 10 && s2.port == 43210);
    CHECK(d2.family == 6 && d2.ip[0] == 0xfd && d2.port == 8080);
    size_t want = 0;
    CHECK(ambit_proxy_v2_decode(SN(wire, 20), &want, &s2, &d2, (uint8_t *)id, sizeof id, &id_n) == AMBIT_RESULT_PROXY_HEADER_INCOMPLETE);
    CHECK(want == n);
    CHECK(ambit_proxy_v2_decode(S("GET / HTTP/1.1\r\n\r\n"), &want, &s2, &d2, (uint8_t *)id, sizeof id, &id_n) == AMBIT_RESULT_PROXY_HEADER_INVALID);
    ambit_socket_addr none = {0};
    CHECK(ambit_proxy_v2_encode(&none, &dst, SN(NULL, 0), wire, sizeof wire, &n) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_proxy_v2_encode(NULL, &dst, SN(NULL, 0), wire, sizeof wire, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_proxy_v2_decode(SN(wire, 16), NULL, &s2, &d2, (uint8_t *)id, sizeof id, &id_n) == AMBIT_RESULT_NULL_PARAMETER);
}

static void socket_addrs(void) {
    ambit_socket_addr a;
    CHECK(ambit_socket_addr_parse(S("10.1.2.3:8080"), &a) == AMBIT_RESULT_OK);
    CHECK(a.family == 4 && a.ip[0] == 10 && a.ip[1] == 1 && a.ip[2] == 2 && a.ip[3] == 3 && a.port == 8080);
    char text[64];
    size_t n = 0;
    CHECK(ambit_socket_addr_format(&a, (uint8_t *)text, sizeof text, &n) == AMBIT_RESULT_OK);
    CHECK(n == strlen("10.1.2.3:8080") && memcmp(text, "10.1.2.3:8080", n) == 0);
    CHECK(ambit_socket_addr_format(&a, (uint8_t *)text, 4, &n) == AMBIT_RESULT_INSUFFICIENT_SIZE);
    CHECK(n == strlen("10.1.2.3:8080"));
    CHECK(ambit_socket_addr_parse(S("[fd00::2]:15008"), &a) == AMBIT_RESULT_OK);
    CHECK(a.family == 6 && a.ip[0] == 0xfd && a.ip[15] == 2 && a.port == 15008);
    CHECK(ambit_socket_addr_format(&a, (uint8_t *)text, sizeof text, &n) == AMBIT_RESULT_OK);
    CHECK(n == strlen("[fd00::2]:15008") && memcmp(text, "[fd00::2]:15008", n) == 0);
    /* Refused: outputs untouched. */
    ambit_socket_addr kept = a;
    CHECK(ambit_socket_addr_parse(S("10.1.2.3"), &a) == AMBIT_RESULT_INVALID_PARAMETER); /* no port */
    CHECK(ambit_socket_addr_parse(S("not-an-ip:80"), &a) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_socket_addr_parse(S("fd00::2:80"), &a) == AMBIT_RESULT_INVALID_PARAMETER); /* v6 needs [] */
    CHECK(ambit_socket_addr_parse(S("10.1.2.3:65536"), &a) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(a.family == kept.family && a.port == kept.port && memcmp(a.ip, kept.ip, sizeof a.ip) == 0);
    ambit_socket_addr none = {0};
    CHECK(ambit_socket_addr_format(&none, (uint8_t *)text, sizeof text, &n) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_socket_addr_parse(SN(NULL, 3), &a) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_socket_addr_parse(S("10.1.2.3:80"), NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_socket_addr_format(NULL, (uint8_t *)text, sizeof text, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_socket_addr_format(&a, (uint8_t *)text, sizeof text, NULL) == AMBIT_RESULT_NULL_PARAMETER);
}

static void policies(void) {
    const char *yaml =
        "apiVersion: security.istio.io/v1\n"
        "kind: AuthorizationPolicy\n"
        "metadata: {name: allow-frontend, namespace: shop}\n"
        "spec:\n"
        "  selector: {matchLabels: {app: cart}}\n"
        "  rules:\n"
        "  - from: [{source: {principals: [\"cluster.local/ns/shop/sa/frontend\"]}}]\n";
    const ambit_policy_set *set = NULL;
    ambit_error *err = NULL;
    CHECK(ambit_policy_set_from_istio_yaml(S(yaml), &set, &err) == AMBIT_RESULT_OK);
    CHECK(set != NULL && err == NULL && ambit_policy_set_len(set) == 1);
    ambit_label app = {.key = S("app"), .value = S("cart")};
    ambit_l4_attributes a = {
        .destination_namespace = S("shop"),
        .destination_labels = &app, .destination_labels_len = 1,
        .source_principal = S("spiffe://cluster.local/ns/shop/sa/frontend"),
        .source = addr_of("10.0.0.1:0"),
        .destination = addr_of("10.0.0.2:8080"),
    };
    bool allowed = false;
    char policy[64];
    size_t n = 0;
    CHECK(ambit_policy_set_evaluate_l4(set, &a, &allowed, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(allowed && n == strlen("shop/allow-frontend") && memcmp(policy, "shop/allow-frontend", n) == 0);
    a.source_principal.len = 0; /* plaintext */
    CHECK(ambit_policy_set_evaluate_l4(set, &a, &allowed, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(!allowed && n == 0);
    /* Outputs untouched on failure. */
    allowed = true;
    a.source.family = 9; /* not an address */
    CHECK(ambit_policy_set_evaluate_l4(set, &a, &allowed, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(allowed == true);
    a.source.family = 4;
    a.destination_namespace = SN(NULL, 4);
    CHECK(ambit_policy_set_evaluate_l4(set, &a, &allowed, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    a.destination_namespace = S("shop");
    a.destination_labels = NULL; /* with a nonzero count */
    CHECK(ambit_policy_set_evaluate_l4(set, &a, &allowed, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    a.destination_labels = &app;
    CHECK(ambit_policy_set_evaluate_l4(NULL, &a, &allowed, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_policy_set_evaluate_l4(set, NULL, &allowed, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_policy_set_evaluate_l4(set, &a, NULL, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_policy_set_evaluate_l4(set, &a, &allowed, (uint8_t *)policy, sizeof policy, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    /* The per-connection fast path. */
    const ambit_spiffe_id *sid = NULL;
    CHECK(ambit_spiffe_id_new(S("cluster.local/ns/shop/sa/frontend"), &sid) == AMBIT_RESULT_OK && sid);
    CHECK(ambit_spiffe_id_new(S("not a spiffe id"), &sid) == AMBIT_RESULT_INVALID_SPIFFE_ID);
    ambit_socket_addr from = {.family = 4, .ip = {10, 0, 0, 1}, .port = 5000};
    ambit_socket_addr to = {.family = 4, .ip = {10, 0, 0, 2}, .port = 8080};
    /* Without labels the selector policy does not apply: allowed, no deciding policy. */
    CHECK(ambit_policy_set_decide(set, sid, &from, &to, S("shop"), &allowed, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    CHECK(allowed && n == 0);
    CHECK(ambit_policy_set_decide(set, NULL, &from, &to, S("shop"), &allowed, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_OK);
    ambit_socket_addr nowhere = {0};
    CHECK(ambit_policy_set_decide(set, sid, &nowhere, &to, S("shop"), &allowed, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_INVALID_PARAMETER);
    CHECK(ambit_policy_set_decide(set, sid, NULL, &to, S("shop"), &allowed, (uint8_t *)policy, sizeof policy, &n) == AMBIT_RESULT_NULL_PARAMETER);
    ambit_spiffe_id_free(sid);
    ambit_spiffe_id_free(NULL);
    ambit_policy_set_free(set);

    const ambit_policy_set *bad = NULL;
    CHECK(ambit_policy_set_from_istio_yaml(S("kind: AuthorizationPolicy\napiVersion: security.istio.io/v1\nmetadata: {name: p}\nspec: {action: NOPE}\n"), &bad, &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(bad == NULL && err != NULL);
    char msg[256];
    CHECK(ambit_error_message(err, (uint8_t *)msg, sizeof msg, &n) == AMBIT_RESULT_OK);
    CHECK(n > 0 && strstr(msg, "spec.action") != NULL);
    ambit_error_free(err);
    CHECK(ambit_policy_set_from_istio_yaml(S("{{{{ not yaml"), &bad, NULL) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(ambit_policy_set_from_istio_yaml(S("x: 1"), NULL, NULL) == AMBIT_RESULT_NULL_PARAMETER);
    CHECK(ambit_policy_set_len(NULL) == 0);
    ambit_policy_set_free(NULL);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s CHAIN.pem ROOT.pem EXPIRED.pem OTHER_ROOT.pem\n", argv[0]);
        return 2;
    }
    version_and_messages();
    spiffe_ids();
    chains(argv);
    proxy_v2();
    socket_addrs();
    policies();
    return finish();
}
