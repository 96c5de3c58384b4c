#ifndef NETUSE_CSMBCLIENT_SHIM_H
#define NETUSE_CSMBCLIENT_SHIM_H
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <libsmbclient.h>
#endif
