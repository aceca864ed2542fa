// echo-server PORT: the test pods' echo app (in the busybox test image as
// /bin/echo-server). Each connection gets back every byte it sends; after the client's
// FIN the server half-closes too, as `nc -ll -e cat` does. Unlike busybox nc, which
// listens with a backlog of one and forks a cat per connection, it listens with a
// backlog of 4096 and serves each connection on a thread: a burst of connections must
// never overflow the app's own accept queue, since the drops that causes (a SYN
// retransmitted a second later, sometimes a reset) look like connections the mesh
// lost. Built static by node.py, like pause.c.
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void* serve(void* arg) {
  int fd = (int)(long)arg;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) break;  // the client's FIN: answer with ours
    if (n < 0) {
      if (errno == EINTR) continue;
      goto done;  // reset: nothing left to answer
    }
    for (ssize_t off = 0; off < n;) {
      ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        goto done;
      }
      off += w;
    }
  }
  shutdown(fd, SHUT_WR);
done:
  close(fd);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: echo-server PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  const int port = atoi(argv[1]);
  // Dual-stack when the pod has IPv6, else IPv4 only.
  int lfd = socket(AF_INET6, SOCK_STREAM, 0);
  int one = 1, zero = 0;
  if (lfd >= 0) {
    struct sockaddr_in6 a6;
    memset(&a6, 0, sizeof(a6));
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((unsigned short)port);
    a6.sin6_addr = in6addr_any;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(lfd, (struct sockaddr*)&a6, sizeof(a6)) != 0) {
      close(lfd);
      lfd = -1;
    }
  }
  if (lfd < 0) {
    struct sockaddr_in a4;
    memset(&a4, 0, sizeof(a4));
    a4.sin_family = AF_INET;
    a4.sin_port = htons((unsigned short)port);
    a4.sin_addr.s_addr = htonl(INADDR_ANY);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (lfd < 0 || bind(lfd, (struct sockaddr*)&a4, sizeof(a4)) != 0) {
      perror("echo-server: bind");
      return 1;
    }
  }
  if (listen(lfd, 4096) != 0) {
    perror("echo-server: listen");
    return 1;
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 128 * 1024);
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      perror("echo-server: accept");
      usleep(10000);  // out of fds or memory: let connections end
      continue;
    }
    pthread_t t;
    if (pthread_create(&t, &attr, serve, (void*)(long)fd) != 0) close(fd);
  }
}
