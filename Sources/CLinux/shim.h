#ifndef NETUSE_CLINUX_SHIM_H
#define NETUSE_CLINUX_SHIM_H
// Linux calls that Swift's Glibc module hides behind _GNU_SOURCE.
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/fsuid.h>
#include <fcntl.h>
#include <malloc.h>

/* Open flags behind _GNU_SOURCE. O_DIRECT and O_LARGEFILE differ between architectures:
   on arm64 040000 is O_DIRECTORY and 0100000 is O_NOFOLLOW. */
#define NETUSE_O_PATH    010000000
#define NETUSE_O_NOATIME 01000000
#if defined(__aarch64__) || defined(__arm__) || defined(__powerpc__)
#define NETUSE_O_DIRECT    0200000
#define NETUSE_O_LARGEFILE 0400000
#elif defined(__x86_64__) || defined(__i386__) || defined(__riscv) || defined(__loongarch__) || defined(__s390__)
#define NETUSE_O_DIRECT    040000
#define NETUSE_O_LARGEFILE 0100000
#else
#error "O_DIRECT and O_LARGEFILE: add this architecture's values"
#endif

#define NETUSE_RENAME_NOREPLACE (1u << 0)
#define NETUSE_RENAME_EXCHANGE  (1u << 1)

static inline int netuse_renameat2(int olddirfd, const char *oldpath,
                                   int newdirfd, const char *newpath, unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

/// openat2(2): resolution that stays beneath `dirfd` and follows no symlink, whatever the path says.
static inline int netuse_open_beneath(int dirfd, const char *path, int flags, mode_t mode) {
    struct open_how how = { .flags = (unsigned long long)flags, .mode = (flags & (O_CREAT | 020000000 /* O_TMPFILE */)) ? mode : 0,
                            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* The calling thread's file-system identity. Linux keeps fsuid, fsgid and the supplementary
   groups per thread; glibc's setgroups() changes every thread of the process (it broadcasts),
   so the group list is set with the raw system call, which changes this thread alone. */
static inline int netuse_thread_setgroups(size_t count, const gid_t *groups) {
    return (int)syscall(SYS_setgroups, count, groups);
}
static inline uid_t netuse_setfsuid(uid_t uid) { return (uid_t)setfsuid(uid); }
static inline gid_t netuse_setfsgid(gid_t gid) { return (gid_t)setfsgid(gid); }

/// faccessat2(2) with AT_EACCESS checks with the thread's fsuid, fsgid and groups.
static inline int netuse_access_fd(int fd, int mode) {
    return (int)syscall(SYS_faccessat2, fd, "", mode, 0x200 /* AT_EACCESS */ | 0x1000 /* AT_EMPTY_PATH */);
}

/// Gives memory glibc keeps for the process back to the system.
static inline int netuse_malloc_trim(void) { return malloc_trim(0); }

/// Buffers of file data (a megabyte and more) are mapped and unmapped, never kept on a heap:
/// glibc would otherwise raise its mapping threshold after the first free and keep them, in
/// an arena per thread. Two arenas serve two cores. Before any thread starts.
static inline void netuse_tune_malloc(void) {
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_ARENA_MAX, 2);
}

/// SO_PEERCRED without struct ucred (which needs _GNU_SOURCE).
static inline int netuse_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct { pid_t pid; uid_t uid; gid_t gid; } cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, 17 /* SO_PEERCRED */, &cred, &len) != 0) return -1;
    *pid = cred.pid; *uid = cred.uid; *gid = cred.gid;
    return 0;
}

/// Whether `needle` occurs in `haystack` (memmem, which needs _GNU_SOURCE).
static inline int netuse_contains(const void *haystack, size_t haystack_length,
                                  const void *needle, size_t needle_length) {
    const unsigned char *h = haystack, *n = needle;
    if (needle_length == 0) return 1;
    for (size_t i = 0; i + needle_length <= haystack_length; i++) {
        if (h[i] == n[0] && memcmp(h + i, n, needle_length) == 0) return 1;
    }
    return 0;
}
#endif
