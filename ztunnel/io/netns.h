// Network-namespace helpers: create sockets inside another pod's netns.
#pragma once

#include <string>

#include "ztunnel/core/result.h"
#include "ztunnel/io/fd.h"

namespace zt::io {

/// OpenNetns opens a network-namespace file (e.g. /var/run/netns/pod-a) and checks
/// with NS_GET_NSTYPE that it really is a network namespace.
Result<UniqueFd> OpenNetns(const std::string& path);

/// IsNetns reports whether `fd` refers to a network namespace.
bool IsNetns(int fd);

/// SocketInNetns creates a socket inside the network namespace `netns_fd` from the
/// calling thread: it enters that namespace with setns, creates the socket, and goes
/// back to the thread's own namespace before returning (also on failure). The socket
/// stays in the target namespace for life. Needs CAP_SYS_ADMIN.
Result<UniqueFd> SocketInNetns(int netns_fd, int domain, int type, int protocol);

/// ForeignNetnsOf returns the network namespace socket `fd` lives in (SIOCGSKNS), or
/// an invalid descriptor when that is the process's own: a connection accepted on a
/// listener inside a pod's namespace yields that pod's namespace, for creating the
/// upstream sockets there too.
/// Cheap for the common case: one getsockopt (SO_NETNS_COOKIE) tells a socket of our
/// own namespace apart without opening anything.
Result<UniqueFd> ForeignNetnsOf(int fd);

/// InodeOf is the inode of what `fd` refers to (for a namespace: its identity), or 0.
uint64_t InodeOf(int fd);

}  // namespace zt::io
