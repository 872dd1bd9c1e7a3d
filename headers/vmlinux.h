/* The kernel's types for the architecture being built (bpf2go -target amd64,arm64
 * defines __TARGET_ARCH_x86 or __TARGET_ARCH_arm64), each dumped from a kernel's
 * BTF: amd64 by `make vmlinux` on the development machine, arm64 by
 * `make vmlinux-arm64` from Debian's arm64 cloud kernel. Programs with no
 * architecture (the tc gate) take amd64's: they use only types both share. */
#if defined(__TARGET_ARCH_arm64)
#include "arm64/vmlinux.h"
#else
#include "amd64/vmlinux.h"
#endif
