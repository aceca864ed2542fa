/* The pod sandbox ("pause") process of the test node's sandbox image: PID 1 of every
 * pod, it holds the pod's namespaces, reaps orphaned children (shareProcessNamespace)
 * and exits 0 on SIGTERM or SIGINT. Built with `gcc -static -Os` by node.py. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void on_child(int sig) { (void)sig; }

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("ztunnel-test pause 1");
    return 0;
  }
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGCHLD);
  sigprocmask(SIG_BLOCK, &block, &old);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_child;
  sa.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);

  sigset_t wait_mask = old;
  sigdelset(&wait_mask, SIGTERM);
  sigdelset(&wait_mask, SIGINT);
  sigdelset(&wait_mask, SIGCHLD);
  while (!stop_requested) {
    sigsuspend(&wait_mask); /* signals are blocked outside: no lost wake-up */
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
  }
  return 0;
}
