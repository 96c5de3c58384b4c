#ifndef NETUSE_CFUSE_SHIM_H
#define NETUSE_CFUSE_SHIM_H
// FUSE_USE_VERSION must be set before the include; a systemLibrary target cannot pass cSettings.
// At 312 fuse_session_loop_mt is a real function Swift can call (at 35 it is a macro).
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#endif
