/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* HPACK's Huffman code (RFC 7541, Appendix B) for the printable ASCII bytes, 0x20 to
 * 0x7e: the only bytes a traceparent or a tracestate holds. The socket programs encode
 * with it to find the app's own fields in a header block the way its encoder wrote
 * them (Go's always takes the Huffman form when it is shorter). probes/wire's test
 * derives the table from golang.org/x/net/http2/hpack and holds this one to it. */
#pragma once

#include <linux/types.h>

#define HUFFMAN_FIRST 0x20
#define HUFFMAN_LAST 0x7e
#define HUFFMAN_CODE_MAX 19 /* bits, of '\\' */

struct huffman_code {
	__u32 code; /* its last len bits */
	__u32 len;
};

static const struct huffman_code hpack_huffman[HUFFMAN_LAST - HUFFMAN_FIRST + 1] = {
	{0x14, 6}, {0x3f8, 10}, {0x3f9, 10}, {0xffa, 12}, /*   ! " # */
	{0x1ff9, 13}, {0x15, 6}, {0xf8, 8}, {0x7fa, 11}, /* $ % & ' */
	{0x3fa, 10}, {0x3fb, 10}, {0xf9, 8}, {0x7fb, 11}, /* ( ) * + */
	{0xfa, 8}, {0x16, 6}, {0x17, 6}, {0x18, 6}, /* , - . / */
	{0x0, 5}, {0x1, 5}, {0x2, 5}, {0x19, 6}, /* 0 1 2 3 */
	{0x1a, 6}, {0x1b, 6}, {0x1c, 6}, {0x1d, 6}, /* 4 5 6 7 */
	{0x1e, 6}, {0x1f, 6}, {0x5c, 7}, {0xfb, 8}, /* 8 9 : ; */
	{0x7ffc, 15}, {0x20, 6}, {0xffb, 12}, {0x3fc, 10}, /* < = > ? */
	{0x1ffa, 13}, {0x21, 6}, {0x5d, 7}, {0x5e, 7}, /* @ A B C */
	{0x5f, 7}, {0x60, 7}, {0x61, 7}, {0x62, 7}, /* D E F G */
	{0x63, 7}, {0x64, 7}, {0x65, 7}, {0x66, 7}, /* H I J K */
	{0x67, 7}, {0x68, 7}, {0x69, 7}, {0x6a, 7}, /* L M N O */
	{0x6b, 7}, {0x6c, 7}, {0x6d, 7}, {0x6e, 7}, /* P Q R S */
	{0x6f, 7}, {0x70, 7}, {0x71, 7}, {0x72, 7}, /* T U V W */
	{0xfc, 8}, {0x73, 7}, {0xfd, 8}, {0x1ffb, 13}, /* X Y Z [ */
	{0x7fff0, 19}, {0x1ffc, 13}, {0x3ffc, 14}, {0x22, 6}, /* \\ ] ^ _ */
	{0x7ffd, 15}, {0x3, 5}, {0x23, 6}, {0x4, 5}, /* ` a b c */
	{0x24, 6}, {0x5, 5}, {0x25, 6}, {0x26, 6}, /* d e f g */
	{0x27, 6}, {0x6, 5}, {0x74, 7}, {0x75, 7}, /* h i j k */
	{0x28, 6}, {0x29, 6}, {0x2a, 6}, {0x7, 5}, /* l m n o */
	{0x2b, 6}, {0x76, 7}, {0x2c, 6}, {0x8, 5}, /* p q r s */
	{0x9, 5}, {0x2d, 6}, {0x77, 7}, {0x78, 7}, /* t u v w */
	{0x79, 7}, {0x7a, 7}, {0x7b, 7}, {0x7ffe, 15}, /* x y z { */
	{0x7fc, 11}, {0x3ffd, 14}, {0x1ffd, 13}, /* | } ~ */
};
