/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The standard library's TCP addresses: a *net.TCPAddr{IP, Port, Zone}.
 *
 * The loader sets the offsets (kit.VarName). What is read is taken for a *net.TCPAddr:
 * a probe that reads one from a net.Addr interface checks the interface's dynamic type,
 * in the kernel (net_conn.h) or in userspace by its name (gRPC). */
#pragma once

volatile __u64 off_net_TCPAddr_IP = OFFSET_NONE;
volatile __u64 off_net_TCPAddr_Port = OFFSET_NONE;

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
