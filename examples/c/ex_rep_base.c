/*
 * ex_rep_base: a port of Berkeley DB's ex_rep_base to dbrep.
 *
 * One process per site. Each process listens on -l host:port, connects to
 * every -r host:port, and runs its own TCP transport with threads: a
 * listener, one reader per connection (which feeds dbrep_rep_process_message),
 * a timer thread (dbrep_rep_tick) and, on DBREP_HOLDELECTION, an election
 * thread (the blocking dbrep_rep_elect must not run on a reader).
 *
 *   ex_rep_base -h HOME -l host:port [-r host:port]... [-M | -C]
 *               [-n nsites] [-p priority]
 *
 * Commands on standard input, one per line:
 *   put KEY VALUE   (master) commit; prints "committed KEY=VALUE token=HEX permanent=0|1"
 *   get KEY         prints "KEY=VALUE" or "KEY: not found"
 *   wait HEX        wait (up to 30 s) for a commit token to be applied here
 *   stat            prints the role and the master's eid
 *   quit            (or end of input) exit
 * Events are printed as "EVENT: ..." lines.
 *
 * Wire format, per message: 4-byte control length, 4-byte rec length (both
 * big-endian), control, rec. A new connection first carries the sender's
 * listen address as one such frame (control = address, rec empty), from
 * which the receiver derives its eid for that site.
 */
#include "dbrep.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXCONN 64
#define MAXADDR 128
#define MAXMSG (64u << 20)
#define SELF_EID 0

/* ---- the machine table: who is connected, by eid ---------------------- */

typedef struct {
    int fd;          /* -1: free slot */
    dbrep_eid eid;
    pthread_mutex_t wlock; /* one writer at a time on fd */
} conn;

static conn conns[MAXCONN];
static char addrs[MAXCONN][MAXADDR]; /* eid - 1 -> that site's listen address */
static int naddrs;
static pthread_mutex_t mt_lock = PTHREAD_MUTEX_INITIALIZER;

static dbrep_env *env;
static char self_addr[MAXADDR];
static uint32_t nsites = 3;

static pthread_mutex_t elect_lock = PTHREAD_MUTEX_INITIALIZER;
static int electing;

/* Prints one line at a time, so the output of different threads does not mix. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&out_lock);
    vprintf(fmt, ap);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    va_end(ap);
}

static dbrep_eid eid_for(const char *addr) {
    pthread_mutex_lock(&mt_lock);
    int i;
    for (i = 0; i < naddrs; i++)
        if (strcmp(addrs[i], addr) == 0)
            break;
    if (i == naddrs && naddrs < MAXCONN) {
        snprintf(addrs[i], MAXADDR, "%s", addr);
        naddrs++;
    }
    pthread_mutex_unlock(&mt_lock);
    return i + 1;
}

static conn *add_conn(int fd, dbrep_eid eid) {
    pthread_mutex_lock(&mt_lock);
    conn *c = NULL;
    for (int i = 0; i < MAXCONN && !c; i++)
        if (conns[i].fd < 0)
            c = &conns[i];
    if (c) {
        pthread_mutex_lock(&c->wlock);
        c->fd = fd;
        c->eid = eid;
        pthread_mutex_unlock(&c->wlock);
    }
    pthread_mutex_unlock(&mt_lock);
    return c;
}

static void drop_conn(conn *c) {
    pthread_mutex_lock(&mt_lock);
    pthread_mutex_lock(&c->wlock);
    close(c->fd);
    c->fd = -1;
    pthread_mutex_unlock(&c->wlock);
    pthread_mutex_unlock(&mt_lock);
}

/* ---- framing ------------------------------------------------------------ */

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n) {
    uint8_t *b = p;
    while (n > 0) {
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Writes one frame to `c` if it still holds a connection to `eid` (the
 * slot may have been closed, or reused for another site, since it was
 * picked). */
static int write_frame(conn *c, dbrep_eid eid, const uint8_t *control, size_t clen,
                       const uint8_t *rec, size_t rlen) {
    uint32_t hdr[2] = {htonl((uint32_t)clen), htonl((uint32_t)rlen)};
    pthread_mutex_lock(&c->wlock);
    int rc = c->fd < 0 || c->eid != eid || write_all(c->fd, hdr, sizeof hdr) || write_all(c->fd, control, clen) ||
             write_all(c->fd, rec, rlen);
    pthread_mutex_unlock(&c->wlock);
    return rc;
}

/* Reads one frame into malloc'd buffers the caller frees. */
static int read_frame(int fd, uint8_t **control, size_t *clen, uint8_t **rec, size_t *rlen) {
    uint32_t hdr[2];
    if (read_all(fd, hdr, sizeof hdr))
        return -1;
    *clen = ntohl(hdr[0]);
    *rlen = ntohl(hdr[1]);
    if (*clen > MAXMSG || *rlen > MAXMSG)
        return -1;
    *control = malloc(*clen + 1);
    *rec = malloc(*rlen + 1);
    if (read_all(fd, *control, *clen) || read_all(fd, *rec, *rlen)) {
        free(*control);
        free(*rec);
        return -1;
    }
    return 0;
}

/* ---- the transport dbrep calls -------------------------------------------- */

/* The library lends control and rec for the duration of the call; they go
 * straight to the socket, no copy. A broadcast goes once to each site. */
static int send_fn(void *ctx, const uint8_t *control, size_t clen, const uint8_t *rec, size_t rlen,
                   const dbrep_lsn *lsn, dbrep_eid eid, uint32_t flags) {
    (void)ctx;
    (void)lsn;
    (void)flags;
    int sent_to[MAXCONN + 1] = {0};
    int ok = 0, tried = 0;
    pthread_mutex_lock(&mt_lock);
    conn *targets[MAXCONN];
    dbrep_eid target_eids[MAXCONN];
    int n = 0;
    for (int i = 0; i < MAXCONN; i++) {
        conn *c = &conns[i];
        if (c->fd < 0 || c->eid > MAXCONN || sent_to[c->eid])
            continue;
        if (eid == DBREP_EID_BROADCAST || eid == c->eid) {
            sent_to[c->eid] = 1;
            target_eids[n] = c->eid;
            targets[n++] = c;
        }
    }
    pthread_mutex_unlock(&mt_lock);
    for (int i = 0; i < n; i++) {
        tried++;
        if (write_frame(targets[i], target_eids[i], control, clen, rec, rlen) == 0)
            ok++;
    }
    /* A broadcast nobody could hear is still "sent"; a directed one is not. */
    return (eid == DBREP_EID_BROADCAST || (tried > 0 && ok == tried)) ? 0 : 1;
}

/* ---- elections -------------------------------------------------------------- */

static void *election_thread(void *arg) {
    (void)arg;
    dbrep_eid master;
    int rc = dbrep_rep_elect(env, nsites, 0, 0, &master);
    if (rc == DBREP_OK) {
        rc = dbrep_rep_start(env, NULL, 0, DBREP_MASTER);
        if (rc != DBREP_OK)
            say("rep_start(MASTER) after winning: %s\n", dbrep_strerror(rc));
    } else if (rc != DBREP_NEWMASTER) {
        say("election: %s (%d)\n", dbrep_strerror(rc), rc);
    }
    pthread_mutex_lock(&elect_lock);
    electing = 0;
    pthread_mutex_unlock(&elect_lock);
    return NULL;
}

static void hold_election(void) {
    pthread_mutex_lock(&elect_lock);
    int start = !electing;
    electing = 1;
    pthread_mutex_unlock(&elect_lock);
    if (!start)
        return;
    pthread_t t;
    if (pthread_create(&t, NULL, election_thread, NULL) == 0)
        pthread_detach(t);
}

static void act_on(int rc) {
    switch (rc) {
    case DBREP_HOLDELECTION:
        hold_election();
        break;
    case DBREP_DUPMASTER:
        dbrep_rep_start(env, NULL, 0, DBREP_CLIENT);
        hold_election();
        break;
    default:
        break;
    }
}

static void on_event(void *ctx, int event, const dbrep_event_info *info) {
    (void)ctx;
    switch (event) {
    case DBREP_EVENT_REP_MASTER:
        say("EVENT: now master\n");
        break;
    case DBREP_EVENT_REP_CLIENT:
        say("EVENT: now client\n");
        break;
    case DBREP_EVENT_REP_NEWMASTER:
        say("EVENT: new master %d\n", info->eid);
        break;
    case DBREP_EVENT_REP_ELECTED:
        say("EVENT: elected\n");
        break;
    case DBREP_EVENT_REP_STARTUPDONE:
        say("EVENT: startup done\n");
        break;
    default:
        break;
    }
}

/* ---- threads: readers, listener, connectors, timer -------------------------- */

typedef struct {
    int fd;
    int handshake_sent;
} reader_arg;

static void *reader_thread(void *arg) {
    reader_arg a = *(reader_arg *)arg;
    free(arg);
    uint8_t *control, *rec;
    size_t clen, rlen;
    if (!a.handshake_sent) {
        conn tmp = {a.fd, 0, PTHREAD_MUTEX_INITIALIZER};
        write_frame(&tmp, 0, (const uint8_t *)self_addr, strlen(self_addr), NULL, 0);
    }
    if (read_frame(a.fd, &control, &clen, &rec, &rlen)) {
        close(a.fd);
        return NULL;
    }
    control[clen] = 0;
    dbrep_eid eid = eid_for((const char *)control);
    free(control);
    free(rec);
    conn *c = add_conn(a.fd, eid);
    if (!c) {
        close(a.fd);
        return NULL;
    }
    while (read_frame(a.fd, &control, &clen, &rec, &rlen) == 0) {
        dbrep_eid who;
        int rc = dbrep_rep_process_message(env, control, clen, rec, rlen, eid, &who, NULL, NULL);
        free(control);
        free(rec);
        act_on(rc);
    }
    drop_conn(c);
    return NULL;
}

static void spawn_reader(int fd, int handshake_sent) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    reader_arg *a = malloc(sizeof *a);
    a->fd = fd;
    a->handshake_sent = handshake_sent;
    pthread_t t;
    if (pthread_create(&t, NULL, reader_thread, a) == 0)
        pthread_detach(t);
    else
        free(a);
}

static int split(const char *hostport, char *host, size_t hlen, char **port) {
    snprintf(host, hlen, "%s", hostport);
    char *colon = strrchr(host, ':');
    if (!colon)
        return -1;
    *colon = 0;
    *port = colon + 1;
    return 0;
}

static int open_socket(const char *hostport, int listening) {
    char host[MAXADDR];
    char *port;
    if (split(hostport, host, sizeof host, &port))
        return -1;
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res))
        return -1;
    int fd = socket(res->ai_family, res->ai_socktype, 0);
    int one = 1;
    int rc = fd < 0 ? -1
             : listening
                 ? (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one),
                    bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 16))
                 : connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc && fd >= 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *listener_thread(void *arg) {
    int lfd = *(int *)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd >= 0)
            spawn_reader(fd, 0);
        else if (errno != EINTR)
            return NULL;
    }
}

/* Connects to one remote site, retrying until it is up; the connection then
 * gets a reader like an accepted one. */
static void *connector_thread(void *arg) {
    const char *remote = arg;
    long wait_ms = 50;
    for (;;) {
        int fd = open_socket(remote, 0);
        if (fd >= 0) {
            conn tmp = {fd, 0, PTHREAD_MUTEX_INITIALIZER};
            write_frame(&tmp, 0, (const uint8_t *)self_addr, strlen(self_addr), NULL, 0);
            spawn_reader(fd, 1);
            return NULL;
        }
        struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (wait_ms < 1000)
            wait_ms *= 2;
    }
}

/* Calls dbrep_rep_tick whenever the deadline it returned comes. */
static void *timer_thread(void *arg) {
    (void)arg;
    for (;;) {
        uint64_t next;
        int rc = dbrep_rep_tick(env, &next);
        if (rc == DBREP_CLOSED)
            return NULL;
        act_on(rc);
        if (next > 500000)
            next = 500000; /* notice new work (an election) within half a second */
        struct timespec ts = {(time_t)(next / 1000000), (long)(next % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- the application: stdin commands ------------------------------------------ */

static void hex(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static int unhex(const char *s, uint8_t *b, size_t n) {
    if (strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        b[i] = (uint8_t)v;
    }
    return 0;
}

static void do_put(const char *key, const char *value) {
    dbrep_txn *txn;
    dbrep_commit_info info;
    int rc = dbrep_txn_begin(env, &txn);
    if (rc == DBREP_OK)
        rc = dbrep_txn_put(txn, (const uint8_t *)key, strlen(key), (const uint8_t *)value, strlen(value));
    if (rc == DBREP_OK) {
        rc = dbrep_txn_commit(txn, &info);
    } else if (txn) {
        dbrep_txn_abort(txn);
    }
    if (rc != DBREP_OK) {
        say("put: %s (%s)\n", dbrep_strerror(rc), dbrep_last_error());
        return;
    }
    char t[2 * DBREP_TOKEN_SIZE + 1];
    hex(info.token, DBREP_TOKEN_SIZE, t);
    say("committed %s=%s token=%s permanent=%d\n", key, value, t, info.permanent);
}

static void do_get(const char *key) {
    dbrep_buf v;
    int rc = dbrep_get(env, (const uint8_t *)key, strlen(key), DBREP_READ_STALE, 0, &v);
    if (rc == DBREP_OK)
        say("%s=%.*s\n", key, (int)v.len, (const char *)v.data);
    else
        say("%s: %s\n", key, rc == DBREP_NOTFOUND ? "not found" : dbrep_strerror(rc));
    dbrep_buf_free(&v);
}

static void do_wait(const char *h) {
    uint8_t token[DBREP_TOKEN_SIZE];
    if (unhex(h, token, sizeof token)) {
        say("wait: bad token\n");
        return;
    }
    int rc = dbrep_txn_applied(env, token, sizeof token, 30000000);
    say("%s\n", rc == DBREP_OK ? "applied" : dbrep_strerror(rc));
}

static void usage(void) {
    fprintf(stderr, "usage: ex_rep_base -h HOME -l host:port [-r host:port]... [-M | -C] "
                    "[-n nsites] [-p priority]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *home = NULL;
    const char *remotes[MAXCONN];
    int nremotes = 0, opt;
    uint32_t start = DBREP_CLIENT, priority = 100;
    while ((opt = getopt(argc, argv, "h:l:r:MCn:p:")) != -1) {
        switch (opt) {
        case 'h': home = optarg; break;
        case 'l': snprintf(self_addr, sizeof self_addr, "%s", optarg); break;
        case 'r': if (nremotes < MAXCONN) remotes[nremotes++] = optarg; break;
        case 'M': start = DBREP_MASTER; break;
        case 'C': start = DBREP_CLIENT; break;
        case 'n': nsites = (uint32_t)atoi(optarg); break;
        case 'p': priority = (uint32_t)atoi(optarg); break;
        default: usage();
        }
    }
    if (!home || !self_addr[0])
        usage();
    for (int i = 0; i < MAXCONN; i++) {
        conns[i].fd = -1;
        pthread_mutex_init(&conns[i].wlock, NULL);
    }

    int rc = dbrep_env_open(home, NULL, &env);
    if (rc != DBREP_OK) {
        fprintf(stderr, "open %s: %s (%s)\n", home, dbrep_strerror(rc), dbrep_last_error());
        return 1;
    }
    if ((rc = dbrep_rep_set_transport(env, SELF_EID, send_fn, NULL)) ||
        (rc = dbrep_set_event_notify(env, on_event, NULL)) ||
        (rc = dbrep_rep_set_nsites(env, nsites)) ||
        (rc = dbrep_rep_set_priority(env, priority)) ||
        (rc = dbrep_rep_set_timeout(env, DBREP_HEARTBEAT_SEND, 200000)) ||
        (rc = dbrep_rep_set_timeout(env, DBREP_HEARTBEAT_MONITOR, 1000000)) ||
        (rc = dbrep_rep_set_timeout(env, DBREP_MASTER_SEARCH_TIMEOUT, 1000000))) {
        fprintf(stderr, "configure: %s (%s)\n", dbrep_strerror(rc), dbrep_last_error());
        return 1;
    }

    int lfd = open_socket(self_addr, 1);
    if (lfd < 0) {
        fprintf(stderr, "cannot listen on %s: %s\n", self_addr, strerror(errno));
        return 1;
    }
    pthread_t t;
    pthread_create(&t, NULL, listener_thread, &lfd);
    pthread_detach(t);
    for (int i = 0; i < nremotes; i++) {
        pthread_create(&t, NULL, connector_thread, (void *)remotes[i]);
        pthread_detach(t);
    }
    if ((rc = dbrep_rep_start(env, (const uint8_t *)self_addr, strlen(self_addr), start))) {
        fprintf(stderr, "rep_start: %s (%s)\n", dbrep_strerror(rc), dbrep_last_error());
        return 1;
    }
    pthread_create(&t, NULL, timer_thread, NULL);
    pthread_detach(t);

    char line[1024];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[16] = "", a[512] = "", b[512] = "";
        int n = sscanf(line, "%15s %511s %511s", cmd, a, b);
        if (n <= 0)
            continue;
        if (strcmp(cmd, "put") == 0 && n == 3)
            do_put(a, b);
        else if (strcmp(cmd, "get") == 0 && n == 2)
            do_get(a);
        else if (strcmp(cmd, "wait") == 0 && n == 2)
            do_wait(a);
        else if (strcmp(cmd, "stat") == 0) {
            dbrep_rep_stat_t st;
            dbrep_rep_stat(env, &st, 0);
            say("role=%s master=%d\n",
                   st.st_status == DBREP_MASTER ? "master" : st.st_status == DBREP_CLIENT ? "client" : "none",
                   st.st_master);
        } else if (strcmp(cmd, "quit") == 0)
            break;
        else
            say("unknown command: %s", line);
    }
    /* The reader and timer threads still hold the handle: stop the
     * environment, and let process exit end the threads. */
    dbrep_env_shutdown(env);
    return 0;
}
