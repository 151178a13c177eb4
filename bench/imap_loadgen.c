/* IMAP load generator for bench/imap_load.py: the same cycle as its Python client, in C, so the
 * client costs the server as little CPU as possible (built by imap_load.py with gcc -O2).
 *
 *   imap_loadgen HOST PORT CLIENTS WARMUP DURATION PASSWORD USER [USER...]
 *
 * One thread per client, blocking sockets, a new connection per cycle:
 *   LOGIN, LIST "" "*", STATUS INBOX (MESSAGES UNSEEN), SELECT INBOX,
 *   FETCH a:b (UID FLAGS ENVELOPE) (a random range of up to 10), STORE x,y +FLAGS (\Seen),
 *   STORE z +FLAGS (\Deleted), EXPUNGE, APPEND INBOX (0.6-4 KB, LITERAL+), LOGOUT
 * Clients are spread over the users (client i uses USER[i % n]). After WARMUP seconds the
 * tagged responses are counted for DURATION seconds. Prints one JSON object:
 *   {"commands": n, "errors": n, "cycles": n, "failures": n, "elapsed": s, "cpu": s,
 *    "timeline": [per-second counts], "last_error": "..."}
 * where "cpu" is the CPU time (user + system) this process used during the measured window.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *host, *password;
static int port;
static char **users;
static int nusers;
static atomic_long commands, errors, cycles, failures;
static atomic_int stopping;
static char last_error[256];
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *WORDS[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "mail",
                              "server", "message", "inbox", "folder", "client", "flags", "select"};

typedef struct {
    int fd;
    char buf[65536];
    size_t start, end;
    unsigned seed;
    int tag;
} conn_t;

static void note_error(const char *fmt, ...) {
    va_list ap;
    pthread_mutex_lock(&error_lock);
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    for (char *p = last_error; *p; p++)
        if (*p == '"' || *p == '\\' || *p == '\r' || *p == '\n') *p = ' ';
    pthread_mutex_unlock(&error_lock);
}

static int fill(conn_t *c) {
    if (c->start > 0 && c->start == c->end) c->start = c->end = 0;
    if (c->end == sizeof c->buf) {
        if (c->start == 0) return -1;
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    ssize_t n = recv(c->fd, c->buf + c->end, sizeof c->buf - c->end, 0);
    if (n <= 0) return -1;
    c->end += (size_t)n;
    return 0;
}

/* One line (without CRLF) into out; literals {n} are read and skipped, the line goes on. */
static int read_line(conn_t *c, char *out, size_t cap) {
    size_t len = 0;
    for (;;) {
        char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);
        if (!nl) {
            if (fill(c) < 0) return -1;
            continue;
        }
        size_t n = (size_t)(nl - (c->buf + c->start)) + 1;
        size_t keep = n < cap - len - 1 ? n : cap - len - 1;
        memcpy(out + len, c->buf + c->start, keep);
        len += keep;
        out[len] = 0;
        c->start += n;
        /* a literal: "...{123}\r\n" then 123 bytes, then the rest of the line */
        char *brace = len >= 4 ? strrchr(out, '{') : NULL;
        if (brace && (strstr(brace, "}\r\n") || strstr(brace, "+}\r\n"))) {
            long size = strtol(brace + 1, NULL, 10);
            while ((long)(c->end - c->start) < size) {
                size -= (long)(c->end - c->start);
                c->start = c->end;
                if (fill(c) < 0) return -1;
            }
            c->start += (size_t)size;
            len = (size_t)(brace - out);
            out[len] = 0;
            continue;
        }
        return (int)len;
    }
}

static int send_all(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0) return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Send a command (and an optional LITERAL+ literal), read to its tagged answer.
 * Returns 1 for OK, 0 for NO/BAD, -1 for a dead connection. *exists gets "* n EXISTS". */
static int command(conn_t *c, const char *text, const char *literal, size_t literal_len, int *exists) {
    char line[70000], tag[16];
    int tl = snprintf(tag, sizeof tag, "a%d", ++c->tag);
    int n;
    if (literal) {
        n = snprintf(line, sizeof line, "%s %s {%zu+}\r\n", tag, text, literal_len);
        if (send_all(c->fd, line, (size_t)n) < 0 || send_all(c->fd, literal, literal_len) < 0 ||
            send_all(c->fd, "\r\n", 2) < 0)
            return -1;
    } else {
        n = snprintf(line, sizeof line, "%s %s\r\n", tag, text);
        if (send_all(c->fd, line, (size_t)n) < 0) return -1;
    }
    for (;;) {
        if (read_line(c, line, sizeof line) < 0) return -1;
        if (exists && line[0] == '*') {
            int v;
            if (sscanf(line, "* %d EXISTS", &v) == 1) *exists = v;
        }
        if (strncmp(line, tag, (size_t)tl) == 0 && line[tl] == ' ') {
            atomic_fetch_add(&commands, 1);
            if (strncmp(line + tl + 1, "OK", 2) == 0) return 1;
            atomic_fetch_add(&errors, 1);
            note_error("%.40s: %.150s", text, line);
            return 0;
        }
    }
}

static int connect_to(void) {
    struct addrinfo hints = {0}, *res;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, portstr, &hints, &res) != 0) return -1;
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct timeval tv = {30, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    return fd;
}

static size_t make_message(char *out, size_t cap, long serial, unsigned *seed, const char *to) {
    size_t size = 600 + (size_t)(rand_r(seed) % 3400);
    int n = snprintf(out, cap,
                     "From: Sender %ld <sender%ld@example.org>\r\nTo: Bench <%s>\r\n"
                     "Subject: message %ld %s %s\r\nDate: Thu, 1 Feb 2024 10:00:00 +0000\r\n"
                     "Message-ID: <%ld.%u@example.org>\r\nMIME-Version: 1.0\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n\r\n",
                     serial % 97, serial % 97, to, serial, WORDS[rand_r(seed) % 16], WORDS[rand_r(seed) % 16],
                     serial, rand_r(seed));
    size_t len = (size_t)n, col = 0;
    while (len < size && len + 8 < cap) {
        const char *w = WORDS[rand_r(seed) % 16];
        size_t wl = strlen(w);
        memcpy(out + len, w, wl);
        len += wl;
        col += wl + 1;
        if (col > 70) {
            memcpy(out + len, "\r\n", 2);
            len += 2;
            col = 0;
        } else {
            out[len++] = ' ';
        }
    }
    memcpy(out + len, "\r\n", 2);
    return len + 2;
}

static void *client(void *arg) {
    long id = (long)arg;
    const char *user = users[id % nusers];
    conn_t *c = malloc(sizeof *c);
    char cmd[512], *msg = malloc(8192);
    long serial = id * 10000000L;
    unsigned seed = (unsigned)id * 7919u + 1;
    while (!atomic_load(&stopping)) {
        c->fd = connect_to();
        c->start = c->end = 0;
        c->tag = 0;
        if (c->fd < 0) {
            atomic_fetch_add(&failures, 1);
            note_error("connect: %s", strerror(errno));
            usleep(50000);
            continue;
        }
        char greeting[4096];
        int exists = 0, ok = read_line(c, greeting, sizeof greeting) >= 0;
        snprintf(cmd, sizeof cmd, "LOGIN \"%s\" \"%s\"", user, password);
        ok = ok && command(c, cmd, NULL, 0, NULL) == 1;
        ok = ok && command(c, "LIST \"\" \"*\"", NULL, 0, NULL) >= 0;
        ok = ok && command(c, "STATUS INBOX (MESSAGES UNSEEN)", NULL, 0, NULL) >= 0;
        ok = ok && command(c, "SELECT INBOX", NULL, 0, &exists) == 1;
        if (ok && exists) {
            int a = 1 + rand_r(&seed) % exists, b = a + rand_r(&seed) % 10;
            if (b > exists) b = exists;
            snprintf(cmd, sizeof cmd, "FETCH %d:%d (UID FLAGS ENVELOPE)", a, b);
            ok = ok && command(c, cmd, NULL, 0, NULL) >= 0;
            snprintf(cmd, sizeof cmd, "STORE %d,%d +FLAGS (\\Seen)", 1 + rand_r(&seed) % exists,
                     1 + rand_r(&seed) % exists);
            ok = ok && command(c, cmd, NULL, 0, NULL) >= 0;
            snprintf(cmd, sizeof cmd, "STORE %d +FLAGS (\\Deleted)", 1 + rand_r(&seed) % exists);
            ok = ok && command(c, cmd, NULL, 0, NULL) >= 0;
            ok = ok && command(c, "EXPUNGE", NULL, 0, NULL) >= 0;
        }
        if (ok) {
            size_t len = make_message(msg, 8192, ++serial, &seed, user);
            ok = command(c, "APPEND INBOX", msg, len, NULL) >= 0;
        }
        ok = ok && command(c, "LOGOUT", NULL, 0, NULL) >= 0;
        if (ok)
            atomic_fetch_add(&cycles, 1);
        else
            atomic_fetch_add(&failures, 1);
        close(c->fd);
    }
    free(msg);
    free(c);
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void sleep_until(double t) {
    double d = t - now();
    if (d > 0) {
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: %s HOST PORT CLIENTS WARMUP DURATION PASSWORD USER [USER...]\n", argv[0]);
        return 2;
    }
    host = argv[1];
    port = atoi(argv[2]);
    int clients = atoi(argv[3]);
    double warmup = atof(argv[4]), duration = atof(argv[5]);
    password = argv[6];
    users = argv + 7;
    nusers = argc - 7;
    pthread_t *threads = calloc((size_t)clients, sizeof *threads);
    for (long i = 0; i < clients; i++) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 512 * 1024);
        pthread_create(&threads[i], &attr, client, (void *)i);
        pthread_attr_destroy(&attr);
    }
    sleep_until(now() + warmup);
    long c0 = atomic_load(&commands), e0 = atomic_load(&errors), y0 = atomic_load(&cycles),
         f0 = atomic_load(&failures);
    double cpu0 = cpu_seconds(), start = now();
    int seconds = (int)duration;
    long *timeline = calloc((size_t)seconds + 1, sizeof *timeline);
    long last = c0;
    for (int s = 1; s <= seconds; s++) {
        sleep_until(start + s);
        long cur = atomic_load(&commands);
        timeline[s - 1] = cur - last;
        last = cur;
    }
    sleep_until(start + duration);
    double elapsed = now() - start, cpu = cpu_seconds() - cpu0;
    long c1 = atomic_load(&commands), e1 = atomic_load(&errors), y1 = atomic_load(&cycles),
         f1 = atomic_load(&failures);
    atomic_store(&stopping, 1);
    for (int i = 0; i < clients; i++) pthread_join(threads[i], NULL);
    printf("{\"commands\": %ld, \"errors\": %ld, \"cycles\": %ld, \"failures\": %ld, \"elapsed\": %.4f, "
           "\"cpu\": %.4f, \"timeline\": [",
           c1 - c0, e1 - e0, y1 - y0, f1 - f0, elapsed, cpu);
    for (int s = 0; s < seconds; s++) printf("%s%ld", s ? ", " : "", timeline[s]);
    pthread_mutex_lock(&error_lock);
    printf("], \"last_error\": \"%s\"}\n", last_error);
    pthread_mutex_unlock(&error_lock);
    return 0;
}
