/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The standard library's TCP connections: the remote address of a net.Conn.
 *
 * A *net.TCPConn is a net.conn{fd *netFD}; the netFD's raddr is a net.Addr, a
 * *net.TCPAddr{IP, Port, Zone} for TCP. The loader sets the offsets (kit.VarName) and the
 * addresses of the two pointer types' descriptors in the app, so that what is read is
 * known to be what it is taken for: another net.Conn (TLS, a Unix socket, a wrapper)
 * gives no address. A probe that checks the connection's type itself (by its name, in
 * userspace) can read an address with read_tcp_addr alone. */
#pragma once

volatile __u64 off_net_TCPConn_conn = OFFSET_NONE;
volatile __u64 off_net_conn_fd = OFFSET_NONE;
volatile __u64 off_net_netFD_raddr = OFFSET_NONE;
volatile __u64 off_net_TCPAddr_IP = OFFSET_NONE;
volatile __u64 off_net_TCPAddr_Port = OFFSET_NONE;
volatile __u64 type_net_TCPConn = 0; /* *net.TCPConn's type descriptor; 0: unknown */
volatile __u64 type_net_TCPAddr = 0; /* *net.TCPAddr's */

struct tcp_addr {
	__u8 ip[16];
	__u8 ip_len; /* 4 or 16; 0 for no address */
	__u8 _pad;
	__u16 port;
	__u32 _pad2;
};

/* read_tcp_addr reads the IP (4 or 16 bytes, *ip_len) and port of the *net.TCPAddr at
 * tcp; -1 for none. */
static __always_inline int read_tcp_addr(__u64 tcp, __u8 *ip, __u8 *ip_len, __u64 *port)
{
	if (!tcp || off_net_TCPAddr_IP == OFFSET_NONE || off_net_TCPAddr_Port == OFFSET_NONE)
		return -1;
	struct go_slice s = {};
	read_user(&s, sizeof(s), tcp + off_net_TCPAddr_IP);
	if (s.len == 4 && read_user(ip, 4, s.ptr) == 0)
		*ip_len = 4;
	else if (s.len == 16 && read_user(ip, 16, s.ptr) == 0)
		*ip_len = 16;
	else
		return -1;
	*port = read_ptr(tcp + off_net_TCPAddr_Port);
	return 0;
}

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
