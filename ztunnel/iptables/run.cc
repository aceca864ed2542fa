#include "ztunnel/iptables/run.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace zt::iptables {
namespace {

// Resolve finds argv0 in PATH in the parent: the child may only do async-signal-safe
// work between fork and exec.
std::string Resolve(const std::string& argv0) {
  if (argv0.find('/') != std::string::npos) return argv0;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + argv0;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

// SigpipeBlock keeps a write to a pipe whose reader died from killing the process:
// SIGPIPE is blocked on this thread while it lives, and a pending one is consumed.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeBlock() {
    const timespec zero{};
    while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_, old_;
};

void CloseBoth(int fds[2]) {
  for (int i = 0; i < 2; ++i) {
    if (fds[i] >= 0) ::close(fds[i]);
    fds[i] = -1;
  }
}

}  // namespace

std::string CommandResult::Describe() const {
  if (!started) return err;
  std::string first = err.substr(0, err.find('\n'));
  if (first.empty()) first = out.substr(0, out.find('\n'));
  std::string s = exit_code < 0 ? "killed by a signal" : "exit code " + std::to_string(exit_code);
  return first.empty() ? s : s + ": " + first;
}

CommandResult RunInNetns(int netns_fd, const std::vector<std::string>& argv,
                         const std::string& input) {
  CommandResult r;
  const std::string binary = argv.empty() ? "" : Resolve(argv[0]);
  if (binary.empty()) {
    r.err = (argv.empty() ? std::string("no command") : argv[0]) + ": not found in PATH";
    return r;
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, exec_err[2] = {-1, -1};
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0 ||
      ::pipe2(exec_err, O_CLOEXEC) != 0) {
    r.err = std::string("pipe: ") + std::strerror(errno);
    CloseBoth(in), CloseBoth(out), CloseBoth(err), CloseBoth(exec_err);
    return r;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Child: async-signal-safe calls only. Report a failed setns/exec through
    // exec_err (closed on a successful exec by O_CLOEXEC).
    int code = 0;
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) code = errno;
    if (code == 0 && (::dup2(in[0], 0) < 0 || ::dup2(out[1], 1) < 0 || ::dup2(err[1], 2) < 0)) {
      code = errno;
    }
    if (code == 0) {
      ::execv(binary.c_str(), args.data());
      code = errno;
    }
    (void)!::write(exec_err[1], &code, sizeof(code));
    ::_exit(127);
  }
  ::close(in[0]), ::close(out[1]), ::close(err[1]), ::close(exec_err[1]);
  if (pid < 0) {
    r.err = std::string("fork: ") + std::strerror(errno);
    ::close(in[1]), ::close(out[0]), ::close(err[0]), ::close(exec_err[0]);
    return r;
  }
  // Feed stdin and drain stdout/stderr together, so neither side can block the other.
  SigpipeBlock no_sigpipe;
  size_t written = 0;
  int stdin_fd = in[1];
  // Non-blocking: a full pipe must send us back to poll, to drain the child's output.
  ::fcntl(stdin_fd, F_SETFL, ::fcntl(stdin_fd, F_GETFL) | O_NONBLOCK);
  if (input.empty()) {
    ::close(stdin_fd);
    stdin_fd = -1;
  }
  bool out_open = true, err_open = true;
  while (out_open || err_open || stdin_fd >= 0) {
    pollfd fds[3] = {{out_open ? out[0] : -1, POLLIN, 0},
                     {err_open ? err[0] : -1, POLLIN, 0},
                     {stdin_fd, POLLOUT, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        (i == 0 ? out_open : err_open) = false;
      }
    }
    if (stdin_fd >= 0 && fds[2].revents != 0) {
      const ssize_t n = ::write(stdin_fd, input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if (n < 0 && errno != EINTR && errno != EAGAIN) {
        written = input.size();  // the child stopped reading
      }
      if (written == input.size()) {
        ::close(stdin_fd);
        stdin_fd = -1;
      }
    }
  }
  if (stdin_fd >= 0) ::close(stdin_fd);
  ::close(out[0]), ::close(err[0]);
  int child_errno = 0;
  const bool exec_failed = ::read(exec_err[0], &child_errno, sizeof(child_errno)) ==
                           static_cast<ssize_t>(sizeof(child_errno));
  ::close(exec_err[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (exec_failed) {
    r.err = binary + ": " + std::strerror(child_errno);
    return r;
  }
  r.started = true;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool WriteInNetns(int netns_fd, const std::string& path, const std::string& value,
                  std::string* error) {
  int result[2] = {-1, -1};
  if (::pipe2(result, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Child: async-signal-safe calls only; the errno (0: written) goes back on the pipe.
    int code = 0;
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) code = errno;
    if (code == 0) {
      const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) {
        code = errno;
      } else {
        const ssize_t n = ::write(fd, value.data(), value.size());
        if (n != static_cast<ssize_t>(value.size())) code = n < 0 ? errno : EIO;
        ::close(fd);
      }
    }
    (void)!::write(result[1], &code, sizeof(code));
    ::_exit(code == 0 ? 0 : 1);
  }
  ::close(result[1]);
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    ::close(result[0]);
    return false;
  }
  int code = EIO;
  const bool reported =
      ::read(result[0], &code, sizeof(code)) == static_cast<ssize_t>(sizeof(code));
  ::close(result[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (reported && code == 0) return true;
  *error = "writing " + path + ": " + std::strerror(reported ? code : EIO);
  return false;
}

}  // namespace zt::iptables
