/*
 * wal_cq.c - a completion queue that carries WAL callbacks to an event loop.
 *
 * The WAL calls back from its writer thread, but its users live on event
 * loops (libevent in gateway/ and replicator/), and wal/ may not include
 * libevent. wal_cq bridges the two with an eventfd: wal_cq_post appends
 * (fn, arg) to a mutex-protected array and, when the array was empty,
 * writes the eventfd; the loop watches the fd and calls wal_cq_process,
 * which swaps the array out and runs every callback on the loop's thread.
 * One eventfd write per batch of completions, not per completion: with 256
 * writers sharing a sync, the loop wakes once.
 */
#include "wal_int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct cq_item {
    void (*fn)(void *);
    void *arg;
} cq_item;

struct wal_cq {
    int fd;
    pthread_mutex_t mu;
    cq_item *items, *spare;
    size_t n, cap, spare_cap;
};

int
wal_cq_new(wal_cq **out)
{
    wal_cq *cq;

    if (!out)
        return MRD_EINVAL;
    if (!(cq = calloc(1, sizeof(*cq))))
        return -ENOMEM;
    cq->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (cq->fd < 0) {
        int rc = -errno;
        free(cq);
        return rc;
    }
    pthread_mutex_init(&cq->mu, NULL);
    *out = cq;
    return 0;
}

void
wal_cq_free(wal_cq *cq)
{
    if (!cq)
        return;
    close(cq->fd);
    pthread_mutex_destroy(&cq->mu);
    free(cq->items);
    free(cq->spare);
    free(cq);
}

int
wal_cq_fd(const wal_cq *cq)
{
    return cq->fd;
}

void
wal_cq_post(void *ud, void (*fn)(void *arg), void *arg)
{
    wal_cq *cq = ud;
    int kick;

    pthread_mutex_lock(&cq->mu);
    while (cq->n == cq->cap) {
        size_t cap = cq->cap ? cq->cap * 2 : 64;
        cq_item *p = realloc(cq->items, cap * sizeof(*p));
        if (p) {
            cq->items = p;
            cq->cap = cap;
            break;
        }
        /* Out of memory: the callback must still run exactly once, and a
         * durability callback cannot be dropped. Wait for the loop to drain. */
        pthread_mutex_unlock(&cq->mu);
        usleep(1000);
        pthread_mutex_lock(&cq->mu);
    }
    cq->items[cq->n++] = (cq_item){fn, arg};
    kick = cq->n == 1;
    pthread_mutex_unlock(&cq->mu);
    if (kick) {
        uint64_t one = 1;
        ssize_t k;
        do
            k = write(cq->fd, &one, sizeof(one));
        while (k < 0 && errno == EINTR);
        /* EAGAIN means the counter is saturated, i.e. already readable. */
    }
}

int
wal_cq_process(wal_cq *cq)
{
    uint64_t v;
    cq_item *items;
    size_t n, cap;
    ssize_t k;

    do
        k = read(cq->fd, &v, sizeof(v));
    while (k < 0 && errno == EINTR);
    pthread_mutex_lock(&cq->mu);
    items = cq->items;
    n = cq->n;
    cap = cq->cap;
    cq->items = cq->spare;
    cq->cap = cq->spare_cap;
    cq->n = 0;
    cq->spare = NULL;
    cq->spare_cap = 0;
    pthread_mutex_unlock(&cq->mu);
    for (size_t i = 0; i < n; i++)
        items[i].fn(items[i].arg);
    pthread_mutex_lock(&cq->mu);
    if (!cq->spare) {
        cq->spare = items;
        cq->spare_cap = cap;
    } else {
        free(items);
    }
    pthread_mutex_unlock(&cq->mu);
    return (int)n;
}
