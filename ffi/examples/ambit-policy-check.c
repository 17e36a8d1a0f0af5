/* ambit-policy-check: decide one connection against Istio policy YAML, from C.
 *
 *   ambit-policy-check POLICIES.yaml NAMESPACE SOURCE_PRINCIPAL|- SOURCE_IP DEST_IP PORT [key=value...]
 *
 * Prints "ALLOW <policy>" or "DENY <policy>" ("-" when no single policy decided) and exits 0;
 * exits 2 with a message on bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ambit.h"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) { free(buf); buf = NULL; }
            buf = bigger;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

/* `n` bytes at `p` as an ambit_str. */
static ambit_str bytes(const char *p, size_t n) {
    ambit_str s = {(const uint8_t *)p, n};
    return s;
}

/* IP and PORT (text) as one address, "[IP]:PORT" for IPv6; 0 when they are not one. */
static int parse_addr(const char *ip, const char *port, ambit_socket_addr *out) {
    char text[128];
    int n = strchr(ip, ':') ? snprintf(text, sizeof text, "[%s]:%s", ip, port)
                            : snprintf(text, sizeof text, "%s:%s", ip, port);
    if (n < 0 || (size_t)n >= sizeof text) return 0;
    return ambit_socket_addr_parse(bytes(text, (size_t)n), out) == AMBIT_RESULT_OK;
}

static void print_error(const char *what, ambit_result rc, ambit_error *err) {
    char msg[1024];
    size_t n = 0;
    if (err && ambit_error_message(err, (uint8_t *)msg, sizeof msg, &n) == AMBIT_RESULT_OK) {
        fprintf(stderr, "%s: %.*s\n", what, (int)n, msg);
    } else if (ambit_result_message(rc, (uint8_t *)msg, sizeof msg, &n) == AMBIT_RESULT_OK) {
        fprintf(stderr, "%s: %.*s (%u)\n", what, (int)n, msg, (unsigned)rc);
    }
    ambit_error_free(err);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s POLICIES.yaml NAMESPACE SOURCE_PRINCIPAL|- SOURCE_IP DEST_IP PORT [key=value...]\n", argv[0]);
        return 2;
    }
    size_t yaml_len = 0;
    char *yaml = read_file(argv[1], &yaml_len);
    if (!yaml) {
        fprintf(stderr, "%s: cannot read\n", argv[1]);
        return 2;
    }
    const ambit_policy_set *set = NULL;
    ambit_error *err = NULL;
    ambit_result rc = ambit_policy_set_from_istio_yaml(bytes(yaml, yaml_len), &set, &err);
    free(yaml);
    if (rc != AMBIT_RESULT_OK) {
        print_error(argv[1], rc, err);
        return 2;
    }
    /* The source port is not looked at; the destination's is the target port. */
    ambit_socket_addr source, destination;
    if (!parse_addr(argv[4], "0", &source) || !parse_addr(argv[5], argv[6], &destination)) {
        fprintf(stderr, "%s %s %s: expected SOURCE_IP DEST_IP PORT\n", argv[4], argv[5], argv[6]);
        ambit_policy_set_free(set);
        return 2;
    }
    int nlabels = argc - 7;
    ambit_label *labels = calloc(nlabels > 0 ? (size_t)nlabels : 1, sizeof *labels);
    if (!labels) {
        ambit_policy_set_free(set);
        return 2;
    }
    for (int i = 0; i < nlabels; i++) {
        const char *kv = argv[7 + i];
        const char *eq = strchr(kv, '=');
        if (!eq) {
            fprintf(stderr, "label %s: expected key=value\n", kv);
            free(labels);
            ambit_policy_set_free(set);
            return 2;
        }
        labels[i].key = bytes(kv, (size_t)(eq - kv));
        labels[i].value = bytes(eq + 1, strlen(eq + 1));
    }
    const char *principal = strcmp(argv[3], "-") == 0 ? "" : argv[3];
    ambit_l4_attributes attrs = {
        .destination_namespace = bytes(argv[2], strlen(argv[2])),
        .destination_labels = labels,
        .destination_labels_len = (size_t)nlabels,
        .source_principal = bytes(principal, strlen(principal)),
        .source = source,
        .destination = destination,
    };
    bool allowed = false;
    char policy[512];
    size_t policy_len = 0;
    rc = ambit_policy_set_evaluate_l4(set, &attrs, &allowed, (uint8_t *)policy, sizeof policy, &policy_len);
    free(labels);
    ambit_policy_set_free(set);
    if (rc != AMBIT_RESULT_OK) {
        print_error("evaluate", rc, NULL);
        return 2;
    }
    printf("%s %.*s\n", allowed ? "ALLOW" : "DENY", policy_len ? (int)policy_len : 1,
           policy_len ? policy : "-");
    return 0;
}
