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
    ambit_result rc = ambit_policy_set_from_istio_yaml((const uint8_t *)yaml, yaml_len, &set, &err);
    free(yaml);
    if (rc != AMBIT_RESULT_OK) {
        print_error(argv[1], rc, err);
        return 2;
    }
    int nlabels = argc - 7;
    ambit_label *labels = calloc(nlabels > 0 ? (size_t)nlabels : 1, sizeof *labels);
    for (int i = 0; i < nlabels; i++) {
        const char *kv = argv[7 + i];
        const char *eq = strchr(kv, '=');
        if (!eq) {
            fprintf(stderr, "label %s: expected key=value\n", kv);
            return 2;
        }
        labels[i].key = (const uint8_t *)kv;
        labels[i].key_len = (size_t)(eq - kv);
        labels[i].value = (const uint8_t *)(eq + 1);
        labels[i].value_len = strlen(eq + 1);
    }
    const char *principal = strcmp(argv[3], "-") == 0 ? "" : argv[3];
    ambit_l4_attributes attrs = {
        .destination_namespace = (const uint8_t *)argv[2],
        .destination_namespace_len = strlen(argv[2]),
        .destination_labels = labels,
        .destination_labels_len = (size_t)nlabels,
        .source_principal = (const uint8_t *)principal,
        .source_principal_len = strlen(principal),
        .source_ip = (const uint8_t *)argv[4],
        .source_ip_len = strlen(argv[4]),
        .destination_ip = (const uint8_t *)argv[5],
        .destination_ip_len = strlen(argv[5]),
        .destination_port = (uint16_t)atoi(argv[6]),
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
