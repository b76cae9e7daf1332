/*
 * wanem_link.c - links, connections and the data path of the WAN emulator.
 *
 * A link is a listening socket and a target address. Each accepted
 * connection ("a" side) gets a second socket dialled to the target ("b"
 * side), and two pipes: a->b (WANEM_AB) and b->a (WANEM_BA). Every setting
 * is per link and per direction; the two directions of a link are
 * independent, so asymmetric delay, rate and partitions are possible.
 *
 * Delay queue. A pipe owns one evbuffer, q, holding every byte read from its
 * source and not yet handed to its destination, plus a ring of marks
 * {release time, length} that cut q into consecutive runs. When bytes are
 * read at time t, their release time is t + delay + U[0, jitter], raised to
 * the next whole millisecond and never below the release time of the last
 * mark. The rounding lets bytes read within the same millisecond share one
 * mark (so the ring stays small: at most one mark per millisecond of queued
 * time), and the monotone release time is what keeps jitter from
 * reordering: bytes of a connection leave in the order they came, and a
 * late run simply waits behind an earlier one. Bytes are never released
 * early; they may leave up to 1 ms late. When the head mark is due its
 * length moves into `eligible`, the count of bytes at the front of q that
 * may be sent now; a per-pipe timer is armed for the next mark.
 *
 * Token bucket. Each link direction has one bucket shared by all its
 * connections: tokens grow at `rate` bytes/s up to `burst` (default 10 ms
 * worth, at least 16 KiB). A pipe moves min(eligible, tokens, room in the
 * destination's output buffer) bytes at a time. When it is short of tokens,
 * or other pipes are already waiting, it joins the bucket's FIFO of waiters
 * and the bucket arms one timer for when a quantum (about 1 ms of rate)
 * will exist. The timer gives turns in FIFO order while tokens last; only
 * the pipe whose turn it is may take tokens, and a pipe that wants more
 * rejoins at the tail, so the connections of a link share the rate
 * round-robin instead of the busiest socket taking it all. Changing the
 * rate takes effect at once; changing delay or jitter affects bytes read
 * from then on (bytes already queued keep their release time).
 *
 * Backpressure and memory. Nothing grows without bound: a pipe stops reading
 * its source (bufferevent_disable EV_READ) when q holds qmax bytes (default
 * 4 MiB) and starts again below qmax/2; a pipe hands at most WANEM_OUT_HIGH
 * (256 KiB) to the destination's output buffer and continues from the
 * destination's write callback, which fires when that buffer is empty. So a
 * connection holds at most about 2 * (qmax + 256 KiB + one read) bytes, and
 * a fast sender facing a slow link or a receiver that does not read sees TCP
 * backpressure, as it would on a real WAN. qmax also bounds throughput per
 * connection to about qmax / delay, much like a TCP window does.
 *
 * Partition. A partitioned direction stops reading its source and disables
 * writing on its destination, and the pump does nothing; bytes already in q
 * or in the output buffer are held, not dropped. The endpoints see what a
 * real partition looks like to TCP: sends stall once the socket buffers
 * fill, nothing arrives, and the connection stays open. Heal re-enables
 * both and pumps: held bytes whose release time has passed go out at once
 * (subject to the rate), in order, with nothing lost. Bytes already written
 * to the kernel before the partition command may still arrive. A connection
 * accepted while any direction of its link is partitioned is kept waiting:
 * the target is not dialled and nothing is read until the link is fully
 * healed, so the target sees no connection during the partition.
 *
 * Reset and close. Reset sets SO_LINGER {1, 0} on both sockets of every
 * connection of the link and closes them, so both endpoints get an RST
 * (ECONNRESET). An error on either side (including a refused dial of the
 * target) resets the other side the same way. An EOF travels through the
 * pipe like data: after the last queued byte is written the destination is
 * shut down for writing (FIN). When both directions have sent their FIN the
 * connection is freed from a deferred event, never inside a pump.
 *
 * Corruption. `corrupt=N` arms a one-shot fault on a link direction: the
 * byte released after N more bytes (counted over all the direction's
 * connections, in release order) is XORed with 0xff, and the setting
 * disarms itself. wanem sits above TCP, so the receiver's application gets
 * the flipped byte with valid TCP checksums, which is what end-to-end
 * checksums must catch. The flip happens in q, on the byte inside the chunk
 * about to be moved, so the move itself stays one evbuffer_remove_buffer;
 * when nothing is armed the pump pays a single comparison.
 */
#include "wanem_int.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/util.h>

#define NS_PER_MS  1000000ull
#define NS_PER_SEC 1000000000ull

typedef struct wanem_mark {
    uint64_t release_ns;
    size_t len;
} wanem_mark;

typedef struct wanem_pipe wanem_pipe;
struct wanem_pipe {
    wanem_conn *conn;
    int dir;            /* WANEM_AB: src bev[0] -> dst bev[1]; WANEM_BA: reverse */
    struct evbuffer *q; /* every byte read and not yet handed to dst */
    wanem_mark *ring;   /* marks after the eligible prefix of q */
    size_t ring_cap, ring_head, ring_n;
    size_t eligible;     /* bytes at the front of q that are due */
    struct event *timer; /* fires when the head mark is due */
    int reading;         /* EV_READ enabled on src */
    int writing;         /* EV_WRITE enabled on dst */
    int src_eof;         /* src sent FIN; forward it after q drains */
    int eof_sent;        /* dst has been shut down for writing */
    int waiting;         /* on the shaper's waiter list */
    TAILQ_ENTRY(wanem_pipe) wait_entry;
};

typedef enum {
    WANEM_CONN_WAIT_HEAL, /* accepted during a partition; target not dialled */
    WANEM_CONN_CONNECTING,
    WANEM_CONN_UP,
} wanem_conn_state;

struct wanem_conn {
    wanem_link *link;
    uint64_t id;
    wanem_conn_state state;
    struct bufferevent *bev[2]; /* [0] a side (accepted), [1] b side (dialled) */
    wanem_pipe pipe[2];
    struct event *reap; /* deferred free after both FINs */
    int closing;
    TAILQ_ENTRY(wanem_conn) entry;
};

typedef struct wanem_shaper {
    wanem_link *link;
    int dir;
    double tokens;
    uint64_t last_ns;
    struct event *timer;
    wanem_pipe *turn; /* the waiter being pumped by the timer, if any */
    TAILQ_HEAD(, wanem_pipe) waiters;
} wanem_shaper;

struct wanem_link {
    char name[WANEM_NAME_MAX];
    char listen_str[300];
    char target_str[300];
    struct sockaddr_storage target;
    socklen_t target_len;
    struct evconnlistener *lev;
    wanem_dir_conf conf[2];
    wanem_dir_stats stats[2];
    wanem_shaper shaper[2];
    uint64_t conns, conns_total, resets, connect_failures, next_conn_id;
    TAILQ_HEAD(, wanem_conn) conns_list;
    TAILQ_ENTRY(wanem_link) entry;
};

static struct {
    struct event_base *base;
    uint64_t rng;
    TAILQ_HEAD(, wanem_link) links;
} g;

static void pipe_pump(wanem_pipe *p);
static void conn_free(wanem_conn *c);

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

/* splitmix64: seeded from the command line so a lab run can be replayed. */
static uint64_t
rng_next(void)
{
    uint64_t z = (g.rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void
sock_nodelay(evutil_socket_t fd)
{
    int one = 1;
    /* Fails harmlessly on unix sockets. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* The link's queue is q (qmax), not the kernel's: a socket whose reading
 * stopped would otherwise hold up to its autotuned receive buffer (several
 * MiB) more, a bufferbloat no real link of that qmax has. Set on the
 * listener (accepted sockets inherit it) and on dialled sockets. */
#define WANEM_SOCK_RCVBUF (128 * 1024)

static void
sock_rcvbuf(evutil_socket_t fd)
{
    int n = WANEM_SOCK_RCVBUF;

    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, sizeof(n));
}

static void
sock_rst_on_close(struct bufferevent *bev)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    evutil_socket_t fd;

    if (!bev)
        return;
    fd = bufferevent_getfd(bev);
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static uint64_t
dir_burst(const wanem_dir_conf *c)
{
    uint64_t b;

    if (c->burst)
        return c->burst;
    b = c->rate / 100; /* 10 ms worth */
    return b < WANEM_BURST_MIN ? WANEM_BURST_MIN : b;
}

/* The smallest grant worth waking up for: about 1 ms of rate, within
 * [1, 64 KiB] and never above the burst. */
static double
dir_quantum(const wanem_dir_conf *c)
{
    uint64_t q = c->rate / 1000;
    uint64_t b = dir_burst(c);

    if (q > 64 * 1024)
        q = 64 * 1024;
    if (q > b)
        q = b;
    return q ? (double)q : 1.0;
}

static wanem_link *
link_find(const char *name)
{
    wanem_link *l;

    TAILQ_FOREACH(l, &g.links, entry)
    if (strcmp(l->name, name) == 0)
        return l;
    return NULL;
}

int
wanem__addr_resolve(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints, *res = NULL;
    mrd_addr a;
    char tmp[300], port[8];
    size_t n = strlen(spec);
    int zero_port = 0;

    /* mrd_addr_parse refuses port 0, which means "any free port" here. */
    if (n >= sizeof(tmp))
        return MRD_EINVAL;
    memcpy(tmp, spec, n + 1);
    if (n >= 2 && strcmp(tmp + n - 2, ":0") == 0) {
        tmp[n - 1] = '1';
        zero_port = 1;
    }
    if (mrd_addr_parse(tmp, &a) != 0)
        return MRD_EINVAL;
    snprintf(port, sizeof(port), "%u", zero_port ? 0u : (unsigned)a.port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(a.host, port, &hints, &res) != 0 || !res)
        return MRD_EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

const char *
wanem__addr_format(const struct sockaddr *sa, char *out, size_t outsz)
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, outsz, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, outsz, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(out, outsz, "?");
    }
    return out;
}

/* ------------------------------------------------------------------------ */
/* Token bucket                                                             */
/* ------------------------------------------------------------------------ */

static void
shaper_refill(wanem_shaper *s, uint64_t now)
{
    const wanem_dir_conf *c = &s->link->conf[s->dir];
    double burst = (double)dir_burst(c);

    if (now > s->last_ns) {
        s->tokens += (double)(now - s->last_ns) * (double)c->rate / (double)NS_PER_SEC;
        s->last_ns = now;
    }
    if (s->tokens > burst)
        s->tokens = burst;
}

static void
shaper_arm(wanem_shaper *s)
{
    const wanem_dir_conf *c = &s->link->conf[s->dir];
    struct timeval tv;
    double sec;

    if (evtimer_pending(s->timer, NULL) || TAILQ_EMPTY(&s->waiters) || c->rate == 0)
        return;
    sec = (dir_quantum(c) - s->tokens) / (double)c->rate;
    if (sec < 0.0001)
        sec = 0.0001;
    tv.tv_sec = (time_t)sec;
    tv.tv_usec = (suseconds_t)((sec - (double)tv.tv_sec) * 1e6);
    evtimer_add(s->timer, &tv);
}

static void
shaper_wait(wanem_shaper *s, wanem_pipe *p)
{
    if (!p->waiting) {
        TAILQ_INSERT_TAIL(&s->waiters, p, wait_entry);
        p->waiting = 1;
    }
    shaper_arm(s);
}

static void
shaper_unwait(wanem_pipe *p)
{
    wanem_shaper *s = &p->conn->link->shaper[p->dir];

    if (p->waiting) {
        TAILQ_REMOVE(&s->waiters, p, wait_entry);
        p->waiting = 0;
    }
}

/* Grants turns in FIFO order, one quantum or more each, while tokens last.
 * A pipe that still wants more rejoins at the tail, so turns rotate. */
static void
shaper_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    wanem_shaper *s = arg;
    const wanem_dir_conf *c = &s->link->conf[s->dir];
    double q = dir_quantum(c);
    wanem_pipe *p;
    size_t n = 0;

    shaper_refill(s, mrd_clock_mono_ns());
    TAILQ_FOREACH(p, &s->waiters, wait_entry)
    n++;
    n *= 2; /* bound: each waiter at most twice per firing */
    while (n-- > 0 && s->tokens >= q && (p = TAILQ_FIRST(&s->waiters)) != NULL) {
        TAILQ_REMOVE(&s->waiters, p, wait_entry);
        p->waiting = 0;
        s->turn = p;
        pipe_pump(p);
        s->turn = NULL;
    }
    shaper_arm(s);
}

/* ------------------------------------------------------------------------ */
/* Pipes                                                                    */
/* ------------------------------------------------------------------------ */

static struct bufferevent *
pipe_src(const wanem_pipe *p)
{
    return p->conn->bev[p->dir];
}

static struct bufferevent *
pipe_dst(const wanem_pipe *p)
{
    return p->conn->bev[!p->dir];
}

/* Reads from src only when the connection is up, the direction is not
 * partitioned, src has not ended and q has room (with hysteresis). */
static void
pipe_sync_read(wanem_pipe *p)
{
    const wanem_conn *c = p->conn;
    const wanem_dir_conf *conf = &c->link->conf[p->dir];
    size_t qlen = evbuffer_get_length(p->q);
    int room = p->reading ? qlen < conf->qmax : qlen <= conf->qmax / 2;
    int want =
        c->state == WANEM_CONN_UP && !c->closing && !conf->partitioned && !p->src_eof && room;

    if (want == p->reading)
        return;
    if (want)
        bufferevent_enable(pipe_src(p), EV_READ);
    else
        bufferevent_disable(pipe_src(p), EV_READ);
    p->reading = want;
}

/* A partitioned direction also stops flushing its destination's output. */
static void
pipe_sync_write(wanem_pipe *p)
{
    const wanem_conn *c = p->conn;
    int want = !c->link->conf[p->dir].partitioned;

    if (c->state != WANEM_CONN_UP || want == p->writing)
        return;
    if (want)
        bufferevent_enable(pipe_dst(p), EV_WRITE);
    else
        bufferevent_disable(pipe_dst(p), EV_WRITE);
    p->writing = want;
}

static void
conn_schedule_close(wanem_conn *c)
{
    c->closing = 1;
    event_active(c->reap, EV_TIMEOUT, 0);
}

/* Forwards src's FIN once every byte before it has left. */
static void
pipe_check_eof(wanem_pipe *p)
{
    wanem_conn *c = p->conn;
    struct bufferevent *dst = pipe_dst(p);

    if (!p->src_eof || p->eof_sent || c->state != WANEM_CONN_UP ||
        c->link->conf[p->dir].partitioned)
        return;
    if (evbuffer_get_length(p->q) || evbuffer_get_length(bufferevent_get_output(dst)))
        return;
    (void)shutdown(bufferevent_getfd(dst), SHUT_WR);
    p->eof_sent = 1;
    MRD_DEBUG("wanem.conn.fin", "link=%s conn=%llu dir=%s", c->link->name,
              (unsigned long long)c->id, p->dir == WANEM_AB ? "ab" : "ba");
    if (c->pipe[!p->dir].eof_sent)
        conn_schedule_close(c);
}

static void
pipe_arm_timer(wanem_pipe *p, uint64_t in_ns)
{
    struct timeval tv;

    tv.tv_sec = (time_t)(in_ns / NS_PER_SEC);
    tv.tv_usec = (suseconds_t)((in_ns % NS_PER_SEC) / 1000);
    if (tv.tv_sec == 0 && tv.tv_usec == 0)
        tv.tv_usec = 1;
    evtimer_add(p->timer, &tv);
}

/* Flips the byte at offset k of q: the armed corruption of p's direction
 * falls on it. Disarms the setting either way. */
static void
pipe_corrupt(wanem_pipe *p, size_t k)
{
    wanem_link *l = p->conn->link;
    struct evbuffer_ptr pos;
    struct evbuffer_iovec v;

    l->conf[p->dir].corrupt_in = -1;
    if (evbuffer_ptr_set(p->q, &pos, k, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_peek(p->q, 1, &pos, &v, 1) < 1 || v.iov_len == 0) {
        MRD_WARN("wanem.corrupt_failed", "link=%s dir=%s", l->name,
                 p->dir == WANEM_AB ? "ab" : "ba"); /* cannot happen: q holds k+1 bytes */
        return;
    }
    ((unsigned char *)v.iov_base)[0] ^= 0xff;
    l->stats[p->dir].corrupted++;
    MRD_INFO("wanem.corrupt", "link=%s dir=%s conn=%llu offset=%llu", l->name,
             p->dir == WANEM_AB ? "ab" : "ba", (unsigned long long)p->conn->id,
             (unsigned long long)(l->stats[p->dir].bytes_out + k));
}

/* Moves n bytes, all due, from q to out, counting an armed corruption down
 * and flipping its byte if it is among them. */
static int
pipe_move(wanem_pipe *p, struct evbuffer *out, size_t n)
{
    wanem_dir_conf *conf = &p->conn->link->conf[p->dir];

    if (conf->corrupt_in >= 0) {
        if ((uint64_t)conf->corrupt_in < n)
            pipe_corrupt(p, (size_t)conf->corrupt_in);
        else
            conf->corrupt_in -= (int64_t)n;
    }
    return evbuffer_remove_buffer(p->q, out, n);
}

/* Moves due bytes from q to dst's output, within the token bucket and the
 * output high-water mark. Never frees anything. */
static void
pipe_pump(wanem_pipe *p)
{
    wanem_conn *c = p->conn;
    wanem_link *l = c->link;
    const wanem_dir_conf *conf = &l->conf[p->dir];
    wanem_shaper *s = &l->shaper[p->dir];
    struct evbuffer *out;
    uint64_t now;

    if (c->closing)
        return;
    if (c->state == WANEM_CONN_UP && !conf->partitioned) {
        out = bufferevent_get_output(pipe_dst(p));
        now = mrd_clock_mono_ns();
        for (;;) {
            size_t outlen = evbuffer_get_length(out);
            size_t n;
            int moved;

            if (outlen >= WANEM_OUT_HIGH)
                break; /* the write callback pumps again */
            if (p->eligible == 0) {
                wanem_mark *m;

                if (p->ring_n == 0)
                    break;
                m = &p->ring[p->ring_head];
                if (m->release_ns > now) {
                    pipe_arm_timer(p, m->release_ns - now);
                    break;
                }
                p->eligible = m->len;
                p->ring_head = (p->ring_head + 1) % p->ring_cap;
                p->ring_n--;
                continue;
            }
            n = p->eligible < WANEM_OUT_HIGH - outlen ? p->eligible : WANEM_OUT_HIGH - outlen;
            if (conf->rate) {
                double q = dir_quantum(conf);
                double need = (double)n < q ? (double)n : q;

                /* While others wait for tokens, only the pipe whose turn it
                 * is may take them: the rest queue up behind. */
                shaper_refill(s, now);
                if (s->tokens < need || (!TAILQ_EMPTY(&s->waiters) && s->turn != p)) {
                    shaper_wait(s, p);
                    break;
                }
                if ((double)n > s->tokens)
                    n = (size_t)s->tokens;
                s->tokens -= (double)n;
            }
            moved = pipe_move(p, out, n);
            if (moved <= 0)
                break; /* cannot happen: q holds eligible bytes */
            p->eligible -= (size_t)moved;
            l->stats[p->dir].bytes_out += (uint64_t)moved;
        }
    }
    pipe_sync_read(p);
    pipe_check_eof(p);
}

static int
pipe_ring_push(wanem_pipe *p, uint64_t release_ns, size_t len)
{
    if (p->ring_n == p->ring_cap) {
        size_t ncap = p->ring_cap ? p->ring_cap * 2 : 64;
        wanem_mark *nr = malloc(ncap * sizeof(*nr));

        if (!nr)
            return -ENOMEM;
        for (size_t i = 0; i < p->ring_n; i++)
            nr[i] = p->ring[(p->ring_head + i) % p->ring_cap];
        free(p->ring);
        p->ring = nr;
        p->ring_cap = ncap;
        p->ring_head = 0;
    }
    p->ring[(p->ring_head + p->ring_n) % p->ring_cap] = (wanem_mark){release_ns, len};
    p->ring_n++;
    return 0;
}

/* Takes everything src has read into q, stamped with its release time. */
static void
pipe_enqueue(wanem_pipe *p)
{
    wanem_conn *c = p->conn;
    wanem_link *l = c->link;
    const wanem_dir_conf *conf = &l->conf[p->dir];
    struct evbuffer *in = bufferevent_get_input(pipe_src(p));
    size_t n = evbuffer_get_length(in);
    uint64_t now, release;

    if (n == 0)
        return;
    now = mrd_clock_mono_ns();
    release = now + conf->delay_ns;
    if (conf->jitter_ns)
        release += rng_next() % (conf->jitter_ns + 1);
    if (p->ring_n == 0 && release <= now) {
        p->eligible += n; /* no delay and nothing queued behind a mark */
    } else {
        wanem_mark *tail =
            p->ring_n ? &p->ring[(p->ring_head + p->ring_n - 1) % p->ring_cap] : NULL;

        release = (release + NS_PER_MS - 1) / NS_PER_MS * NS_PER_MS;
        if (tail && release <= tail->release_ns) {
            tail->len += n; /* never overtake earlier bytes */
        } else if (pipe_ring_push(p, release, n) != 0) {
            MRD_ERROR("wanem.conn.oom", "link=%s conn=%llu", l->name, (unsigned long long)c->id);
            sock_rst_on_close(c->bev[0]);
            sock_rst_on_close(c->bev[1]);
            conn_schedule_close(c);
            return;
        }
    }
    evbuffer_add_buffer(p->q, in);
    l->stats[p->dir].bytes_in += n;
    pipe_pump(p);
}

static void
pipe_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    pipe_pump(arg);
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

static int
conn_side(const wanem_conn *c, const struct bufferevent *bev)
{
    return bev == c->bev[0] ? 0 : 1;
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
    wanem_conn *c = arg;

    pipe_enqueue(&c->pipe[conn_side(c, bev)]);
}

/* Called when bev's output has drained: the pipe writing into it continues. */
static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
    wanem_conn *c = arg;

    pipe_pump(&c->pipe[!conn_side(c, bev)]);
}

static void
conn_abort(wanem_conn *c, int rst, const char *why)
{
    MRD_DEBUG("wanem.conn.abort", "link=%s conn=%llu why=%s rst=%d", c->link->name,
              (unsigned long long)c->id, why, rst);
    if (rst) {
        sock_rst_on_close(c->bev[0]);
        sock_rst_on_close(c->bev[1]);
    }
    conn_free(c);
}

static void
conn_up(wanem_conn *c)
{
    c->state = WANEM_CONN_UP;
    for (int d = 0; d < 2; d++) {
        pipe_sync_write(&c->pipe[d]);
        pipe_pump(&c->pipe[d]);
    }
}

static void
conn_event_cb(struct bufferevent *bev, short events, void *arg)
{
    wanem_conn *c = arg;
    int side = conn_side(c, bev);

    if (events & BEV_EVENT_CONNECTED) {
        MRD_DEBUG("wanem.conn.up", "link=%s conn=%llu", c->link->name, (unsigned long long)c->id);
        conn_up(c);
        return;
    }
    if (events & BEV_EVENT_ERROR) {
        int err = EVUTIL_SOCKET_ERROR();

        if (c->state == WANEM_CONN_CONNECTING && side == 1) {
            c->link->connect_failures++;
            MRD_WARN("wanem.conn.dial_failed", "link=%s target=%s err=%s", c->link->name,
                     c->link->target_str, mrd_strerror(-err));
            conn_abort(c, 1, "dial_failed");
        } else {
            conn_abort(c, 1, side == 0 ? "a_error" : "b_error");
        }
        return;
    }
    if (events & BEV_EVENT_EOF) {
        wanem_pipe *p = &c->pipe[side];

        pipe_enqueue(p);
        if (c->closing)
            return;
        p->src_eof = 1;
        pipe_pump(p);
    }
}

static void
conn_reap_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_free(arg);
}

static void
conn_free(wanem_conn *c)
{
    wanem_link *l = c->link;

    for (int d = 0; d < 2; d++) {
        wanem_pipe *p = &c->pipe[d];

        shaper_unwait(p);
        if (p->timer)
            event_free(p->timer);
        if (p->q)
            evbuffer_free(p->q);
        free(p->ring);
    }
    for (int i = 0; i < 2; i++)
        if (c->bev[i])
            bufferevent_free(c->bev[i]);
    if (c->reap)
        event_free(c->reap);
    TAILQ_REMOVE(&l->conns_list, c, entry);
    l->conns--;
    MRD_DEBUG("wanem.conn.close", "link=%s conn=%llu", l->name, (unsigned long long)c->id);
    free(c);
}

/* Dials the target for c. On failure c is aborted (and freed). */
static void
conn_dial(wanem_conn *c)
{
    wanem_link *l = c->link;
    evutil_socket_t fd;

    fd = socket(l->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    sock_nodelay(fd);
    sock_rcvbuf(fd);
    c->bev[1] = bufferevent_socket_new(g.base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev[1]) {
        close(fd);
        goto fail;
    }
    bufferevent_setcb(c->bev[1], conn_read_cb, conn_write_cb, conn_event_cb, c);
    c->state = WANEM_CONN_CONNECTING;
    if (bufferevent_socket_connect(c->bev[1], (struct sockaddr *)&l->target, (int)l->target_len) !=
        0)
        goto fail;
    return;

fail:
    l->connect_failures++;
    MRD_WARN("wanem.conn.dial_failed", "link=%s target=%s err=%s", l->name, l->target_str,
             mrd_strerror(-errno));
    conn_abort(c, 1, "dial_failed");
}

static void
link_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
               void *arg)
{
    wanem_link *l = arg;
    wanem_conn *c;
    char peer[80];

    sock_nodelay(fd);
    c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->link = l;
    c->id = ++l->next_conn_id;
    for (int d = 0; d < 2; d++) {
        wanem_pipe *p = &c->pipe[d];

        p->conn = c;
        p->dir = d;
        p->writing = 1; /* new bufferevents start with EV_WRITE enabled */
        p->q = evbuffer_new();
        p->timer = evtimer_new(g.base, pipe_timer_cb, p);
    }
    c->reap = evtimer_new(g.base, conn_reap_cb, c);
    c->bev[0] = bufferevent_socket_new(g.base, fd, BEV_OPT_CLOSE_ON_FREE);
    TAILQ_INSERT_TAIL(&l->conns_list, c, entry);
    l->conns++;
    l->conns_total++;
    if (!c->bev[0])
        close(fd);
    if (!c->bev[0] || !c->reap || !c->pipe[0].q || !c->pipe[1].q || !c->pipe[0].timer ||
        !c->pipe[1].timer) {
        MRD_ERROR("wanem.conn.oom", "link=%s", l->name);
        conn_free(c);
        return;
    }
    bufferevent_setcb(c->bev[0], conn_read_cb, conn_write_cb, conn_event_cb, c);
    MRD_DEBUG("wanem.conn.accept", "link=%s conn=%llu peer=%s", l->name, (unsigned long long)c->id,
              wanem__addr_format(sa, peer, sizeof(peer)));
    if (l->conf[0].partitioned || l->conf[1].partitioned) {
        c->state = WANEM_CONN_WAIT_HEAL;
        return;
    }
    conn_dial(c);
}

static void
link_accept_error_cb(struct evconnlistener *lev, void *arg)
{
    wanem_link *l = arg;
    int err = EVUTIL_SOCKET_ERROR();

    MRD_WARN("wanem.link.accept_error", "link=%s err=%s", l->name, mrd_strerror(-err));
}

/* ------------------------------------------------------------------------ */
/* Links                                                                    */
/* ------------------------------------------------------------------------ */

int
wanem__init(struct event_base *base, uint64_t seed)
{
    g.base = base;
    g.rng = seed;
    TAILQ_INIT(&g.links);
    return 0;
}

static int
name_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= WANEM_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}

int
wanem__link_add(const char *name, const char *listen_spec, const char *target_spec, char *err,
                size_t errsz)
{
    struct sockaddr_storage lss;
    struct sockaddr_storage bound;
    socklen_t llen, blen = sizeof(bound);
    wanem_link *l;
    int rc = MRD_EINVAL;

    if (!name_valid(name)) {
        snprintf(err, errsz, "bad link name '%s': use 1-63 of [A-Za-z0-9._-]", name);
        return MRD_EINVAL;
    }
    if (link_find(name)) {
        snprintf(err, errsz, "link '%s' already exists; 'link del %s' first", name, name);
        return MRD_EEXIST;
    }
    l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errsz, "out of memory");
        return -ENOMEM;
    }
    snprintf(l->name, sizeof(l->name), "%s", name);
    TAILQ_INIT(&l->conns_list);
    if (wanem__addr_resolve(listen_spec, &lss, &llen) != 0) {
        snprintf(err, errsz, "bad listen address '%s': expected host:port, e.g. 127.0.0.1:0",
                 listen_spec);
        goto fail;
    }
    if (wanem__addr_resolve(target_spec, &l->target, &l->target_len) != 0 ||
        ((struct sockaddr_in *)&l->target)->sin_port == 0) { /* same offset in sockaddr_in6 */
        snprintf(err, errsz, "bad target address '%s': expected host:port with a non-zero port",
                 target_spec);
        goto fail;
    }
    for (int d = 0; d < 2; d++) {
        l->conf[d].qmax = WANEM_QMAX_DEFAULT;
        l->conf[d].corrupt_in = -1;
        l->shaper[d].link = l;
        l->shaper[d].dir = d;
        l->shaper[d].last_ns = mrd_clock_mono_ns();
        TAILQ_INIT(&l->shaper[d].waiters);
        l->shaper[d].timer = evtimer_new(g.base, shaper_timer_cb, &l->shaper[d]);
        if (!l->shaper[d].timer) {
            snprintf(err, errsz, "out of memory");
            rc = -ENOMEM;
            goto fail;
        }
    }
    l->lev =
        evconnlistener_new_bind(g.base, link_accept_cb, l,
                                LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                128, (struct sockaddr *)&lss, (int)llen);
    if (!l->lev) {
        rc = -errno;
        snprintf(err, errsz, "cannot listen on %s: %s", listen_spec, mrd_strerror(rc));
        goto fail;
    }
    evconnlistener_set_error_cb(l->lev, link_accept_error_cb);
    sock_rcvbuf(evconnlistener_get_fd(l->lev));
    if (getsockname(evconnlistener_get_fd(l->lev), (struct sockaddr *)&bound, &blen) != 0)
        memcpy(&bound, &lss, sizeof(bound));
    wanem__addr_format((struct sockaddr *)&bound, l->listen_str, sizeof(l->listen_str));
    wanem__addr_format((struct sockaddr *)&l->target, l->target_str, sizeof(l->target_str));
    TAILQ_INSERT_TAIL(&g.links, l, entry);
    MRD_INFO("wanem.link.add", "link=%s listen=%s target=%s", l->name, l->listen_str,
             l->target_str);
    return 0;

fail:
    for (int d = 0; d < 2; d++)
        if (l->shaper[d].timer)
            event_free(l->shaper[d].timer);
    free(l);
    return rc;
}

static void
link_free(wanem_link *l, int rst)
{
    wanem_conn *c;

    while ((c = TAILQ_FIRST(&l->conns_list)) != NULL)
        conn_abort(c, rst, "link_del");
    if (l->lev)
        evconnlistener_free(l->lev);
    for (int d = 0; d < 2; d++)
        if (l->shaper[d].timer)
            event_free(l->shaper[d].timer);
    TAILQ_REMOVE(&g.links, l, entry);
    free(l);
}

int
wanem__link_del(const char *name)
{
    wanem_link *l = link_find(name);

    if (!l)
        return MRD_ENOTFOUND;
    MRD_INFO("wanem.link.del", "link=%s conns=%llu", l->name, (unsigned long long)l->conns);
    link_free(l, 1);
    return 0;
}

void
wanem__shutdown(void)
{
    wanem_link *l;

    while ((l = TAILQ_FIRST(&g.links)) != NULL)
        link_free(l, 0);
}

/* Re-evaluates every connection of l after a setting or partition change. */
static void
link_kick(wanem_link *l)
{
    wanem_conn *c, *next;

    for (c = TAILQ_FIRST(&l->conns_list); c; c = next) {
        next = TAILQ_NEXT(c, entry);
        if (c->state == WANEM_CONN_WAIT_HEAL) {
            if (!l->conf[0].partitioned && !l->conf[1].partitioned)
                conn_dial(c); /* may free c */
            continue;
        }
        for (int d = 0; d < 2; d++) {
            shaper_unwait(&c->pipe[d]);
            pipe_sync_write(&c->pipe[d]);
            pipe_pump(&c->pipe[d]);
        }
    }
}

int
wanem__link_set(const char *name, const wanem_set *s)
{
    wanem_link *l = link_find(name);

    if (!l)
        return MRD_ENOTFOUND;
    for (int d = 0; d < 2; d++) {
        wanem_dir_conf *c = &l->conf[d];

        if (!(s->dirs & (1 << d)))
            continue;
        if (s->has_delay)
            c->delay_ns = s->delay_ns;
        if (s->has_jitter)
            c->jitter_ns = s->jitter_ns;
        if (s->has_rate)
            c->rate = s->rate;
        if (s->has_burst)
            c->burst = s->burst;
        if (s->has_qmax)
            c->qmax = s->qmax;
        if (s->has_corrupt)
            c->corrupt_in = s->corrupt;
        /* Start from a full bucket at the new rate. */
        l->shaper[d].last_ns = mrd_clock_mono_ns();
        l->shaper[d].tokens = (double)dir_burst(c);
        evtimer_del(l->shaper[d].timer);
        MRD_INFO("wanem.link.set",
                 "link=%s dir=%s delay_ms=%.3f jitter_ms=%.3f rate=%llu burst=%llu qmax=%llu "
                 "corrupt_in=%lld",
                 l->name, d == WANEM_AB ? "ab" : "ba", (double)c->delay_ns / 1e6,
                 (double)c->jitter_ns / 1e6, (unsigned long long)c->rate,
                 (unsigned long long)dir_burst(c), (unsigned long long)c->qmax,
                 (long long)c->corrupt_in);
    }
    link_kick(l);
    return 0;
}

int
wanem__link_partition(const char *name, int dirs, int on)
{
    wanem_link *l = link_find(name);

    if (!l)
        return MRD_ENOTFOUND;
    for (int d = 0; d < 2; d++)
        if (dirs & (1 << d))
            l->conf[d].partitioned = on;
    MRD_INFO(on ? "wanem.link.partition" : "wanem.link.heal", "link=%s ab=%d ba=%d conns=%llu",
             l->name, l->conf[0].partitioned, l->conf[1].partitioned, (unsigned long long)l->conns);
    link_kick(l);
    return 0;
}

int
wanem__link_reset(const char *name, uint64_t *killed)
{
    wanem_link *l = link_find(name);
    wanem_conn *c;
    uint64_t n = 0;

    if (!l)
        return MRD_ENOTFOUND;
    while ((c = TAILQ_FIRST(&l->conns_list)) != NULL) {
        conn_abort(c, 1, "reset");
        n++;
    }
    l->resets += n;
    MRD_INFO("wanem.link.reset", "link=%s killed=%llu", l->name, (unsigned long long)n);
    *killed = n;
    return 0;
}

int
wanem__link_info(const char *name, wanem_link_info *out)
{
    wanem_link *l = link_find(name);
    wanem_conn *c;

    if (!l)
        return MRD_ENOTFOUND;
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", l->name);
    snprintf(out->listen, sizeof(out->listen), "%s", l->listen_str);
    snprintf(out->target, sizeof(out->target), "%s", l->target_str);
    for (int d = 0; d < 2; d++) {
        out->dir[d] = l->conf[d];
        out->dir[d].burst = dir_burst(&l->conf[d]);
        out->stats[d] = l->stats[d];
    }
    TAILQ_FOREACH(c, &l->conns_list, entry)
    {
        if (c->state == WANEM_CONN_WAIT_HEAL)
            out->waiting++;
        for (int d = 0; d < 2; d++) {
            struct bufferevent *dst = c->bev[!d];

            out->stats[d].queued += evbuffer_get_length(c->pipe[d].q);
            if (dst)
                out->stats[d].queued += evbuffer_get_length(bufferevent_get_output(dst));
        }
    }
    out->conns = l->conns;
    out->conns_total = l->conns_total;
    out->resets = l->resets;
    out->connect_failures = l->connect_failures;
    return 0;
}

void
wanem__link_foreach(void (*fn)(const char *name, void *user_data), void *user_data)
{
    wanem_link *l;

    TAILQ_FOREACH(l, &g.links, entry)
    fn(l->name, user_data);
}

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

static int
parse_ms(const char *v, uint64_t *ns)
{
    char *end;
    double ms;

    if (!*v)
        return MRD_EINVAL;
    errno = 0;
    ms = strtod(v, &end);
    if (errno || *end || !isfinite(ms) || ms < 0 || ms > WANEM_DELAY_LIMIT_MS)
        return MRD_EINVAL;
    *ns = (uint64_t)llround(ms * 1e6);
    return 0;
}

/* Bytes per second: "125000000", "4MB", "4MiB", "50mbit", "1gbit", "0"/"off". */
static int
parse_rate(const char *v, uint64_t *out)
{
    static const struct {
        const char *suffix;
        double bits;
    } bitunits[] = {{"bit", 1}, {"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9}};
    size_t n = strlen(v);

    if (strcmp(v, "off") == 0 || strcmp(v, "unlimited") == 0) {
        *out = 0;
        return 0;
    }
    for (size_t i = sizeof(bitunits) / sizeof(bitunits[0]); i-- > 0;) {
        size_t sl = strlen(bitunits[i].suffix);
        char num[64], *end;
        double x;

        if (n <= sl || n - sl >= sizeof(num) || strcasecmp(v + n - sl, bitunits[i].suffix) != 0)
            continue;
        memcpy(num, v, n - sl);
        num[n - sl] = 0;
        errno = 0;
        x = strtod(num, &end);
        if (errno || *end || !isfinite(x) || x < 0 || x * bitunits[i].bits / 8 > 1e15)
            return MRD_EINVAL;
        *out = (uint64_t)(x * bitunits[i].bits / 8);
        return 0;
    }
    return mrd_size_parse(v, out);
}

int
wanem__set_parse_kv(wanem_set *s, const char *kv, char *err, size_t errsz)
{
    const char *eq = strchr(kv, '=');
    char key[32];
    const char *v;
    size_t klen;

    if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(key)) {
        snprintf(err, errsz, "expected key=value, got '%s'", kv);
        return MRD_EINVAL;
    }
    klen = (size_t)(eq - kv);
    memcpy(key, kv, klen);
    key[klen] = 0;
    v = eq + 1;
    if (strcmp(key, "delay") == 0) {
        if (parse_ms(v, &s->delay_ns) != 0)
            goto bad_ms;
        s->has_delay = 1;
    } else if (strcmp(key, "jitter") == 0) {
        if (parse_ms(v, &s->jitter_ns) != 0)
            goto bad_ms;
        s->has_jitter = 1;
    } else if (strcmp(key, "rate") == 0) {
        if (parse_rate(v, &s->rate) != 0) {
            snprintf(err, errsz,
                     "bad rate '%s': bytes per second, e.g. 125000000, 4MB, 50mbit, or 0/off", v);
            return MRD_EINVAL;
        }
        s->has_rate = 1;
    } else if (strcmp(key, "burst") == 0) {
        if (mrd_size_parse(v, &s->burst) != 0 || s->burst > WANEM_QMAX_LIMIT) {
            snprintf(err, errsz, "bad burst '%s': bytes up to 256MiB, or 0 for automatic", v);
            return MRD_EINVAL;
        }
        s->has_burst = 1;
    } else if (strcmp(key, "qmax") == 0) {
        if (mrd_size_parse(v, &s->qmax) != 0 || s->qmax < WANEM_QMAX_MIN ||
            s->qmax > WANEM_QMAX_LIMIT) {
            snprintf(err, errsz, "bad qmax '%s': bytes from 64KiB to 256MiB, e.g. 8MiB", v);
            return MRD_EINVAL;
        }
        s->has_qmax = 1;
    } else if (strcmp(key, "corrupt") == 0) {
        uint64_t n = 0;

        if (strcmp(v, "off") != 0 && (mrd_size_parse(v, &n) != 0 || n > (uint64_t)INT64_MAX)) {
            snprintf(err, errsz,
                     "bad corrupt '%s': bytes to release before the flipped one, e.g. 0 or "
                     "1MiB, or off",
                     v);
            return MRD_EINVAL;
        }
        s->corrupt = strcmp(v, "off") == 0 ? -1 : (int64_t)n;
        s->has_corrupt = 1;
    } else if (strcmp(key, "dir") == 0) {
        if (strcmp(v, "ab") == 0)
            s->dirs = WANEM_DIR_AB;
        else if (strcmp(v, "ba") == 0)
            s->dirs = WANEM_DIR_BA;
        else if (strcmp(v, "both") == 0)
            s->dirs = WANEM_DIR_BOTH;
        else {
            snprintf(err, errsz, "bad dir '%s': use ab, ba or both", v);
            return MRD_EINVAL;
        }
    } else {
        snprintf(err, errsz,
                 "unknown setting '%s': use delay, jitter, rate, burst, qmax, corrupt or dir", key);
        return MRD_EINVAL;
    }
    return 0;

bad_ms:
    snprintf(err, errsz, "bad %s '%s': milliseconds from 0 to 600000, e.g. 25 or 0.5", key, v);
    return MRD_EINVAL;
}

int
wanem__set_any(const wanem_set *s)
{
    return s->has_delay || s->has_jitter || s->has_rate || s->has_burst || s->has_qmax ||
           s->has_corrupt;
}
