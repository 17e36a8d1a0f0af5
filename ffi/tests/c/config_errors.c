/* The same broken objects as the Rust and Python tests (testdata/config-errors/, directory in
 * argv[1]): each loader a C host can reach must report the file, object and field named on the
 * fixture's first line ("# where: file | object | field") through ambit_error_location.
 * Ends with "N passed, M failed". */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ambit.h"
#include "check.h"

/* A fixture's text (heap, NUL-terminated) and the three parts of its "# where:" line. */
typedef struct {
    char *text;
    char file[128], object[128], field[128];
} fixture;

static int load(const char *dir, const char *name, fixture *f) {
    memset(f, 0, sizeof *f);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *in = fopen(path, "rb");
    if (!in) return -1;
    size_t cap = 1 << 14;
    if (!(f->text = malloc(cap))) { fclose(in); return -1; }
    size_t len = fread(f->text, 1, cap - 1, in);
    fclose(in);
    f->text[len] = 0;
    const char *p = f->text;
    if (strncmp(p, "# where: ", 9) != 0) return -1;
    p += 9;
    char *outs[3] = {f->file, f->object, f->field};
    for (int i = 0; i < 3; i++) {
        const char *end = strstr(p, i < 2 ? " | " : "\n");
        if (!end || (size_t)(end - p) >= sizeof f->file) return -1;
        memcpy(outs[i], p, (size_t)(end - p));
        p = end + (i < 2 ? 3 : 1);
    }
    return 0;
}

/* Whether `err` is a config error placed exactly where `f` says; frees it. */
static int placed(ambit_error *err, const fixture *f) {
    ambit_str file = {0}, object = {0}, field = {0};
    int ok = err != NULL && ambit_error_code(err) == AMBIT_RESULT_CONFIG_INVALID &&
             ambit_error_location(err, &file, &object, &field) == AMBIT_RESULT_OK &&
             str_eq(file, f->file) && str_eq(object, f->object) && str_eq(field, f->field);
    if (!ok && err != NULL)
        fprintf(stderr, "got %.*s | %.*s | %.*s\n", (int)file.len, (const char *)file.data,
                (int)object.len, (const char *)object.data, (int)field.len, (const char *)field.data);
    ambit_error_free(err);
    return ok;
}

static const char *CONFIG =
    "workloads:\n"
    "- {uid: c/wp, name: waypoint, namespace: shop, serviceAccount: waypoint, workloadIps: [127.32.9.2], node: none}\n";

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s TESTDATA/config-errors\n", argv[0]);
        return 2;
    }
    fixture route, policy;
    CHECK(load(argv[1], "httproute.yaml", &route) == 0);
    CHECK(load(argv[1], "authorizationpolicy.yaml", &policy) == 0);

    ambit_error *err = NULL;
    const ambit_route_table *t = NULL;
    CHECK(ambit_route_table_from_yaml(S(route.text), &t, &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(t == NULL && placed(err, &route));
    err = NULL;
    const ambit_l7_policies *p = NULL;
    CHECK(ambit_l7_policies_from_yaml(S(policy.text), &p, &err) == AMBIT_RESULT_CONFIG_INVALID);
    CHECK(p == NULL && placed(err, &policy));
    err = NULL;

    /* A waypoint started with either as its L7 YAML refuses to start, at the same place. */
    ambit_runtime *rt = NULL;
    CHECK(ambit_runtime_new(1, &rt) == AMBIT_RESULT_OK);
    const ambit_ca *ca = NULL;
    CHECK(ambit_ca_new(S("cluster.local"), &ca, NULL) == AMBIT_RESULT_OK);
    ambit_socket_addr hbone = addr_of("127.32.9.2:0");
    ambit_waypoint_options *o = NULL;
    CHECK(ambit_waypoint_options_new(S("waypoint"), S("shop"), &hbone, &o) == AMBIT_RESULT_OK);
    const fixture *both[2] = {&route, &policy};
    for (int i = 0; i < 2; i++) {
        ambit_waypoint *w = NULL;
        err = NULL;
        CHECK(ambit_waypoint_start(rt, S(CONFIG), S(both[i]->text), ca, o, &w, &err) ==
              AMBIT_RESULT_CONFIG_INVALID);
        CHECK(w == NULL && placed(err, both[i]));
    }
    ambit_waypoint_options_free(o);
    ambit_ca_free(ca);
    ambit_runtime_free(rt);
    free(route.text);
    free(policy.text);
    return finish();
}
