/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The standard library's TCP connections: the remote address of a net.Conn.
 *
 * A *net.TCPConn is a net.conn{fd *netFD}; the netFD's raddr is a net.Addr, a
 * *net.TCPAddr for TCP (net.h). The loader sets the offsets (kit.VarName) and the
 * addresses of the two pointer types' descriptors in the app, so that what is read is
 * known to be what it is taken for: another net.Conn (TLS, a Unix socket, a wrapper)
 * gives no address. */
#pragma once

#include "net.h"

volatile __u64 off_net_TCPConn_conn = OFFSET_NONE;
volatile __u64 off_net_conn_fd = OFFSET_NONE;
volatile __u64 off_net_netFD_raddr = OFFSET_NONE;
volatile __u64 type_net_TCPConn = 0; /* *net.TCPConn's type descriptor; 0: unknown */
volatile __u64 type_net_TCPAddr = 0; /* *net.TCPAddr's */

/* read_tcp_remote reads the remote address of the net.Conn interface at conn into a,
 * if it holds a *net.TCPConn. */
static __always_inline void read_tcp_remote(struct tcp_addr *a, __u64 conn)
{
	if (!type_net_TCPConn || !type_net_TCPAddr || off_net_TCPConn_conn == OFFSET_NONE || off_net_conn_fd == OFFSET_NONE ||
	    off_net_netFD_raddr == OFFSET_NONE || off_net_TCPAddr_IP == OFFSET_NONE || off_net_TCPAddr_Port == OFFSET_NONE)
		return;
	struct go_iface c = {};
	if (read_user(&c, sizeof(c), conn) != 0 || !c.tab || read_ptr(c.tab + 8) != type_net_TCPConn) /* itab.Type */
		return;
	__u64 fd = read_ptr(c.data + off_net_TCPConn_conn + off_net_conn_fd);
	struct go_iface raddr = {};
	if (!fd || read_user(&raddr, sizeof(raddr), fd + off_net_netFD_raddr) != 0 || !raddr.tab ||
	    read_ptr(raddr.tab + 8) != type_net_TCPAddr || !raddr.data)
		return;
	__u64 port = 0;
	if (read_tcp_addr(raddr.data, a->ip, &a->ip_len, &port) == 0)
		a->port = (__u16)port;
}
