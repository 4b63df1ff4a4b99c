/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The standard library's TCP connections: the remote address of a net.Conn.
 *
 * A *net.TCPConn is a net.conn{fd *netFD}; the netFD's raddr is a net.Addr, a
 * *net.TCPAddr{IP, Port, Zone} for TCP. The loader sets the offsets (kit.VarName) and the
 * addresses of the two pointer types' descriptors in the app, so that what is read is
 * known to be what it is taken for: another net.Conn (TLS, a Unix socket, a wrapper)
 * gives no address. */
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
	struct go_slice ip = {};
	read_user(&ip, sizeof(ip), raddr.data + off_net_TCPAddr_IP);
	if (ip.len == 4 && read_user(a->ip, 4, ip.ptr) == 0)
		a->ip_len = 4;
	else if (ip.len == 16 && read_user(a->ip, 16, ip.ptr) == 0)
		a->ip_len = 16;
	else
		return;
	a->port = (__u16)read_ptr(raddr.data + off_net_TCPAddr_Port);
}
