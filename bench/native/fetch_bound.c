/*
 * The native bound of the benchmark: the cold fetch's design, written in C.
 *
 * One thread receives the body and writes it to a file; with "sha256", a
 * second thread hashes what was received (OpenSSL), as this library's digest
 * worker does. No Python, no HTTP library, no cache: what any implementation
 * of an overlapped download-and-hash could reach on this machine. With
 * "inline", the receiving thread hashes each block after writing it, with no
 * second thread (this library hashes bodies of up to 8 MiB in its reading
 * thread too, each block just before writing it). With "raw", nothing is
 * hashed: the native raw transfer.
 *
 * Protocol, one line per request on stdin:
 *     <id> <raw|sha256|inline> <url path> <output file>
 * answered by one line on stdout, which repeats the request's id:
 *     <id> ok <seconds> <hex digest, or "-" for raw>
 *     <id> error <reason, on one line>
 * The connection to 127.0.0.1:<port> (argv[1]) is kept between requests, as
 * the Python contenders keep theirs, and made again when the server closed it.
 * The time runs from sending the request to the file closed and the digest
 * final. Bodies must come with a Content-Length (nginx and the fallback
 * server send one); anything else is an error, never a silent success.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { SLOTS = 16, SLOT_BYTES = 1024 * 1024, HEAD_BYTES = 16 * 1024 };

struct ring {
    char *slot[SLOTS];
    size_t used[SLOTS];
    unsigned long filled, hashed;
    int finished;
    pthread_mutex_t lock;
    pthread_cond_t more, room;
    EVP_MD_CTX *digest;
};

static struct ring ring = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .more = PTHREAD_COND_INITIALIZER,
    .room = PTHREAD_COND_INITIALIZER,
};

static char failure[512];

static int fail(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(failure, sizeof failure, format, args);
    va_end(args);
    for (char *c = failure; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' '; /* one line per answer, whatever a server sent */
    return -1;
}

/* A failure that leaves unread bytes on the connection: it is spent. */
static int drop(int *sock, int result)
{
    close(*sock);
    *sock = -1;
    return result;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The hashing thread: every slot in order, until the receiver is done. */
static void *hash_slots(void *unused)
{
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&ring.lock);
        while (ring.hashed == ring.filled && !ring.finished)
            pthread_cond_wait(&ring.more, &ring.lock);
        if (ring.hashed == ring.filled) {
            pthread_mutex_unlock(&ring.lock);
            return NULL;
        }
        unsigned index = ring.hashed % SLOTS;
        pthread_mutex_unlock(&ring.lock);
        EVP_DigestUpdate(ring.digest, ring.slot[index], ring.used[index]);
        pthread_mutex_lock(&ring.lock);
        ring.hashed++;
        pthread_cond_signal(&ring.room);
        pthread_mutex_unlock(&ring.lock);
    }
}

/* The next free slot, waiting while the hasher is a whole ring behind. */
static unsigned next_slot(int hashing)
{
    if (hashing) {
        pthread_mutex_lock(&ring.lock);
        while (ring.filled - ring.hashed >= SLOTS)
            pthread_cond_wait(&ring.room, &ring.lock);
        pthread_mutex_unlock(&ring.lock);
    }
    return ring.filled % SLOTS;
}

static void hand_over(int hashing, unsigned index, size_t size)
{
    ring.used[index] = size;
    if (hashing) {
        pthread_mutex_lock(&ring.lock);
        ring.filled++;
        pthread_cond_signal(&ring.more);
        pthread_mutex_unlock(&ring.lock);
    } else {
        ring.filled++;
    }
}

static int connect_to(int port)
{
    int sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {
        .sin_family = AF_INET,
        .sin_port = htons((unsigned short)port),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
    };
    if (sock < 0)
        return fail("socket: %s", strerror(errno));
    if (connect(sock, (struct sockaddr *)&address, sizeof address) != 0) {
        fail("connect to 127.0.0.1:%d: %s", port, strerror(errno));
        close(sock);
        return -1;
    }
    return sock;
}

static int send_all(int sock, const char *data, size_t size)
{
    while (size > 0) {
        ssize_t sent = send(sock, data, size, MSG_NOSIGNAL);
        if (sent <= 0)
            return -1;
        data += sent;
        size -= (size_t)sent;
    }
    return 0;
}

/*
 * Read the head of the answer into head[]. Returns the number of body bytes
 * read along with it (at head + *head_size), or -1; *closed is set when the
 * server had closed the connection before answering (a kept connection that
 * expired: the caller connects again).
 */
static long read_head(int sock, char *head, size_t *head_size, long long *length,
                      int *closed)
{
    size_t size = 0;
    char *end = NULL;
    *closed = 0;
    while (end == NULL) {
        if (size + 1 >= HEAD_BYTES)
            return fail("answer head over %d bytes", HEAD_BYTES);
        ssize_t got = recv(sock, head + size, HEAD_BYTES - 1 - size, 0);
        if (got <= 0) {
            *closed = size == 0;
            return fail("connection closed before the answer's head ended");
        }
        size += (size_t)got;
        head[size] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    *head_size = (size_t)(end + 4 - head);
    if (strncmp(head, "HTTP/1.", 7) != 0 || strncmp(head + 8, " 200 ", 5) != 0)
        return fail("not a 200 answer: %.*s", (int)strcspn(head, "\r\n"), head);
    const char *field = strcasestr(head, "\r\ncontent-length:");
    if (field == NULL || field > end)
        return fail("no Content-Length in the answer");
    char *after = NULL;
    *length = strtoll(field + 17, &after, 10);
    if (after == field + 17 || *length < 0)
        return fail("unreadable Content-Length");
    return (long)(size - *head_size);
}

enum { RAW, THREAD, INLINE };

static int fetch(int *sock, int port, int hashing, const char *path,
                 const char *out_path, double *seconds, char *hex)
{
    char request[4096];
    int request_size = snprintf(request, sizeof request,
                                "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                                path, port);
    if (request_size <= 0 || request_size >= (int)sizeof request)
        return fail("path too long");
    static char head[HEAD_BYTES];
    size_t head_size = 0;
    long long length = 0;
    int closed = 0;
    long early = -1;
    double started = now();
    for (int attempt = 0; attempt < 2 && early < 0; attempt++) {
        if (*sock < 0 && (*sock = connect_to(port)) < 0)
            return -1;
        if (send_all(*sock, request, (size_t)request_size) == 0)
            early = read_head(*sock, head, &head_size, &length, &closed);
        else
            closed = 1;
        if (early < 0) {
            close(*sock);
            *sock = -1;
            if (!closed)
                return -1;
        }
    }
    if (early < 0)
        return -1;
    if (early > length)
        return drop(sock, fail("more body than Content-Length"));

    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0)
        return drop(sock, fail("open %s: %s", out_path, strerror(errno)));
    ring.filled = ring.hashed = 0;
    ring.finished = 0;
    EVP_DigestInit_ex(ring.digest, EVP_sha256(), NULL);
    pthread_t hasher;
    if (hashing == THREAD && pthread_create(&hasher, NULL, hash_slots, NULL) != 0) {
        close(out);
        return drop(sock, fail("pthread_create failed"));
    }
    int result = 0;
    long long received = 0;
    while (received < length) {
        unsigned index = next_slot(hashing == THREAD);
        ssize_t got;
        if (early > 0) {
            memcpy(ring.slot[index], head + head_size, (size_t)early);
            got = early;
            early = 0;
        } else {
            long long left = length - received;
            got = recv(*sock, ring.slot[index],
                       left < SLOT_BYTES ? (size_t)left : SLOT_BYTES, 0);
        }
        if (got <= 0) {
            result = fail("body ended at byte %lld of %lld", received, length);
            break;
        }
        for (ssize_t written = 0; written < got;) {
            ssize_t wrote = write(out, ring.slot[index] + written,
                                  (size_t)(got - written));
            if (wrote < 0) {
                result = fail("write %s: %s", out_path, strerror(errno));
                break;
            }
            written += wrote;
        }
        if (result != 0)
            break;
        received += got;
        if (hashing == INLINE)
            EVP_DigestUpdate(ring.digest, ring.slot[index], (size_t)got);
        hand_over(hashing == THREAD, index, (size_t)got);
    }
    if (hashing == THREAD) {
        pthread_mutex_lock(&ring.lock);
        ring.finished = 1;
        pthread_cond_signal(&ring.more);
        pthread_mutex_unlock(&ring.lock);
        pthread_join(hasher, NULL);
    }
    if (close(out) != 0 && result == 0)
        result = fail("close %s: %s", out_path, strerror(errno));
    if (result != 0)
        return drop(sock, result); /* the rest of the body is unread */
    unsigned char value[EVP_MAX_MD_SIZE];
    unsigned value_size = 0;
    EVP_DigestFinal_ex(ring.digest, value, &value_size);
    *seconds = now() - started;
    if (hashing == RAW) {
        strcpy(hex, "-");
    } else {
        for (unsigned i = 0; i < value_size; i++)
            sprintf(hex + 2 * i, "%02x", value[i]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2 || atoi(argv[1]) <= 0) {
        fprintf(stderr, "usage: %s PORT (requests on stdin)\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    for (unsigned i = 0; i < SLOTS; i++)
        if ((ring.slot[i] = malloc(SLOT_BYTES)) == NULL)
            return 1;
    if ((ring.digest = EVP_MD_CTX_new()) == NULL)
        return 1;
    int sock = -1;
    char line[8200], id[32], mode[16], path[4096], out_path[4096];
    while (fgets(line, sizeof line, stdin) != NULL) {
        double seconds = 0;
        char hex[2 * EVP_MAX_MD_SIZE + 1];
        int fields = sscanf(line, "%31s %15s %4095s %4095s", id, mode, path, out_path);
        int hashing = fields != 4                     ? -1
                      : strcmp(mode, "raw") == 0      ? RAW
                      : strcmp(mode, "sha256") == 0   ? THREAD
                      : strcmp(mode, "inline") == 0   ? INLINE
                                                      : -1;
        if (hashing < 0) {
            printf("%s error unreadable request\n", sscanf(line, "%31s", id) == 1 ? id : "-");
        } else if (fetch(&sock, port, hashing, path, out_path, &seconds, hex) != 0) {
            printf("%s error %s\n", id, failure);
        } else {
            printf("%s ok %.9f %s\n", id, seconds, hex);
        }
        fflush(stdout);
    }
    return 0;
}
