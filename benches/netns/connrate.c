/* The sequential connection rate without an interpreter in the way: the Python peers top out
 * near 3,400 connections/s even straight over the veth, which hides what a proxy costs.
 *
 *   connrate serve PORT...           one thread per port: accept, echo 1 byte, close
 *   connrate client HOST PORT SECS   connect, 1 byte, its echo, close, in a loop; prints /s
 *
 * Built by bench_netns.py with the system's cc. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *serve(void *arg) {
    int port = (int)(long)arg;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0) die("socket");
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(l, 1024) < 0) die("listen");
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char b;
        if (read(c, &b, 1) == 1 && write(c, &b, 1) != 1) perror("write");
        close(c);
    }
    return NULL;
}

static int client(const char *host, int port, double secs) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "connrate: %s is not an IPv4 address\n", host);
        return 2;
    }
    long n = 0;
    double end = now() + secs;
    int one = 1;
    while (now() < end) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0) die("socket");
        if (connect(c, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char b = 'x';
        if (write(c, &b, 1) != 1) die("write");
        if (read(c, &b, 1) != 1 || b != 'x') {
            fprintf(stderr, "connrate: no echo\n");
            return 1;
        }
        close(c);
        n++;
    }
    printf("%.1f\n", (double)n / secs);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "serve") == 0) {
        pthread_t t;
        for (int i = 2; i < argc; i++)
            if (pthread_create(&t, NULL, serve, (void *)(long)atoi(argv[i])) != 0) die("thread");
        pause();
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "client") == 0)
        return client(argv[2], atoi(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: connrate serve PORT... | connrate client HOST PORT SECS\n");
    return 2;
}
