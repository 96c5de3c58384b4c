/* A TCP proxy that delays every chunk by a set time in each direction, keeping order: a round
 * trip without kernel modules (tc netem is not available here). Written in C because the
 * client under test must bound the figures, not the proxy: the Python one came to cost as
 * much CPU as netused on a sequential read.
 *
 *   latency-proxy UPSTREAM_PORT ONE_WAY_MICROSECONDS
 *
 * prints the port it listens on (127.0.0.1), then reads commands on standard input:
 * "carried" answers the bytes carried both ways so far, "turns" the times a client spoke after
 * its server had (its round trips, when it waits for each answer), "cut" breaks every
 * connection so far (as a network failure would; new ones still come). It ends when standard
 * input closes.
 *
 * Two threads per direction: one receives and stamps each chunk, one sends it when due. A
 * chunk waits in a kernel pipe of its own, moved in and out with splice(2): the bytes are
 * never copied through the proxy, which then costs a fraction of what a client does. A
 * sender whose target is gone stops; its receiver goes on until its source ends. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CHUNK = 1 << 20, MOST_SOCKETS = 4096 };

struct chunk {
    struct chunk *next;
    struct timespec due;
    size_t length; /* 0: the source closed */
    int pipe[2];   /* where the bytes wait */
};

static void free_chunk(struct chunk *chunk) {
    close(chunk->pipe[0]);
    close(chunk->pipe[1]);
    free(chunk);
}

/* Both directions of one proxied connection: its sockets are closed when all four threads
 * have ended. */
struct connection {
    int client, server;
    atomic_int ended;
    atomic_int answered; /* the server spoke since the client last did */
};

struct pipe {
    struct connection *connection;
    atomic_int ended;
    int source, target;
    pthread_mutex_t lock;
    pthread_cond_t ready;
    struct chunk *head, *tail;
};

static long delay_ns;
static int upstream_port;
static atomic_ullong carried;
static atomic_ullong turns;
static pthread_mutex_t sockets_lock = PTHREAD_MUTEX_INITIALIZER;
static int sockets[MOST_SOCKETS];
static int socket_count;

static void remember(int fd) {
    pthread_mutex_lock(&sockets_lock);
    if (socket_count < MOST_SOCKETS) sockets[socket_count++] = fd;
    pthread_mutex_unlock(&sockets_lock);
}

static void forget(int fd) {
    for (int i = 0; i < socket_count; i++) {
        if (sockets[i] == fd) sockets[i] = sockets[--socket_count];
    }
}

/* A thread of `pipe` ends: the last of a pipe frees it (and what its sender left), the last
 * of a connection closes its sockets. */
static void end_thread(struct pipe *pipe) {
    struct connection *connection = pipe->connection;
    if (atomic_fetch_add(&pipe->ended, 1) == 1) {
        for (struct chunk *chunk = pipe->head, *next; chunk; chunk = next) {
            next = chunk->next;
            free_chunk(chunk);
        }
        free(pipe);
    }
    if (atomic_fetch_add(&connection->ended, 1) == 3) {
        pthread_mutex_lock(&sockets_lock);
        forget(connection->client);
        forget(connection->server);
        pthread_mutex_unlock(&sockets_lock);
        close(connection->client);
        close(connection->server);
        free(connection);
    }
}

static void cut(void) {
    pthread_mutex_lock(&sockets_lock);
    for (int i = 0; i < socket_count; i++) shutdown(sockets[i], SHUT_RDWR);
    socket_count = 0;
    pthread_mutex_unlock(&sockets_lock);
}

static void *receive(void *argument) {
    struct pipe *pipe = argument;
    for (;;) {
        struct chunk *chunk = malloc(sizeof *chunk);
        if (!chunk || pipe2(chunk->pipe, O_CLOEXEC) != 0) abort();
        fcntl(chunk->pipe[1], F_SETPIPE_SZ, CHUNK);
        ssize_t got;
        while ((got = splice(pipe->source, NULL, chunk->pipe[1], NULL, CHUNK, SPLICE_F_MOVE)) < 0 && errno == EINTR) {}
        if (got < 0 && getenv("LATENCY_PROXY_DEBUG")) fprintf(stderr, "latency-proxy: splice in: %s\n", strerror(errno));
        /* Kept here: once queued, the chunk is the sender's, who frees it. */
        size_t length = got > 0 ? (size_t)got : 0;
        chunk->length = length;
        chunk->next = NULL;
        clock_gettime(CLOCK_MONOTONIC, &chunk->due);
        chunk->due.tv_nsec += delay_ns;
        chunk->due.tv_sec += chunk->due.tv_nsec / 1000000000;
        chunk->due.tv_nsec %= 1000000000;
        atomic_fetch_add(&carried, length);
        if (length > 0 && pipe->source == pipe->connection->client) {
            if (atomic_exchange(&pipe->connection->answered, 0)) atomic_fetch_add(&turns, 1);
        } else if (length > 0) {
            atomic_store(&pipe->connection->answered, 1);
        }
        pthread_mutex_lock(&pipe->lock);
        if (pipe->tail) pipe->tail->next = chunk; else pipe->head = chunk;
        pipe->tail = chunk;
        pthread_cond_signal(&pipe->ready);
        pthread_mutex_unlock(&pipe->lock);
        if (length == 0) {
            end_thread(pipe);
            return NULL;
        }
    }
}

static void *deliver(void *argument) {
    struct pipe *pipe = argument;
    for (;;) {
        pthread_mutex_lock(&pipe->lock);
        while (!pipe->head) pthread_cond_wait(&pipe->ready, &pipe->lock);
        struct chunk *chunk = pipe->head;
        pipe->head = chunk->next;
        if (!pipe->head) pipe->tail = NULL;
        pthread_mutex_unlock(&pipe->lock);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &chunk->due, NULL) != 0) {}
        size_t done = 0;
        int failed = 0;
        while (done < chunk->length) {
            ssize_t sent = splice(chunk->pipe[0], NULL, pipe->target, NULL, chunk->length - done, SPLICE_F_MOVE);
            if (sent < 0 && errno == EINTR) continue;
            if (sent <= 0) {
                if (getenv("LATENCY_PROXY_DEBUG")) fprintf(stderr, "latency-proxy: splice out: %s\n", strerror(errno));
                failed = 1;
                break;
            }
            done += (size_t)sent;
        }
        int closed = chunk->length == 0;
        free_chunk(chunk);
        if (closed) shutdown(pipe->target, SHUT_WR);
        /* A dead target: the receiving side ends when its source does. */
        if (closed || failed) {
            end_thread(pipe);
            return NULL;
        }
    }
}

static void start_thread(void *(*body)(void *), void *argument) {
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, 256 << 10);
    pthread_t thread;
    int error = pthread_create(&thread, &attributes, body, argument);
    if (error) {
        fprintf(stderr, "latency-proxy: pthread_create: %s\n", strerror(error));
        abort();
    }
    pthread_attr_destroy(&attributes);
}

static void start_pipe(struct connection *connection, int source, int target) {
    struct pipe *pipe = calloc(1, sizeof *pipe);
    if (!pipe) abort();
    pipe->connection = connection;
    pipe->source = source;
    pipe->target = target;
    pthread_mutex_init(&pipe->lock, NULL);
    pthread_cond_init(&pipe->ready, NULL);
    start_thread(receive, pipe);
    start_thread(deliver, pipe);
}

static void *accept_connections(void *argument) {
    int listener = *(int *)argument;
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) continue;
        int server = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((uint16_t)upstream_port) };
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (server < 0 || connect(server, (struct sockaddr *)&address, sizeof address) != 0) {
            close(client);
            if (server >= 0) close(server);
            continue;
        }
        int on = 1;
        setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        remember(client);
        remember(server);
        struct connection *connection = calloc(1, sizeof *connection);
        if (!connection) abort();
        connection->client = client;
        connection->server = server;
        atomic_store(&connection->answered, 1);
        start_pipe(connection, client, server);
        start_pipe(connection, server, client);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: latency-proxy UPSTREAM_PORT ONE_WAY_MICROSECONDS\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* splice to a closed peer: EPIPE, not death */
    upstream_port = atoi(argv[1]);
    delay_ns = atol(argv[2]) * 1000;
    static int listener;
    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = 0 };
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 64) != 0
        || getsockname(listener, (struct sockaddr *)&address, &length) != 0) {
        perror("latency-proxy");
        return 1;
    }
    printf("%d\n", ntohs(address.sin_port));
    fflush(stdout);
    start_thread(accept_connections, &listener);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "carried", 7) == 0) {
            printf("%llu\n", (unsigned long long)atomic_load(&carried));
            fflush(stdout);
        } else if (strncmp(line, "turns", 5) == 0) {
            printf("%llu\n", (unsigned long long)atomic_load(&turns));
            fflush(stdout);
        } else if (strncmp(line, "cut", 3) == 0) {
            cut();
            printf("cut\n");
            fflush(stdout);
        }
    }
    return 0;
}
