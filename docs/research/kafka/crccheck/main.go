// Checks the claim: from a batch's CRC-32C and the bytes of its last record alone, the
// CRC of the batch with that record changed and a header appended can be computed.
package main

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"math/rand"
)

var tab = crc32.MakeTable(crc32.Castagnoli)

// unshift runs the CRC register back over n bytes, given the state after them and
// their values: each forward step is s' = tab[(s^b)&0xff] ^ s>>8; tab's top bytes
// are all different, so the top byte of s' names the index.
func unshift(state uint32, data []byte) uint32 {
	var top [256]int
	for i := range tab {
		top[tab[i]>>24] = i
	}
	for k := len(data) - 1; k >= 0; k-- {
		i := top[state>>24]
		state = (state^tab[i])<<8 | uint32(byte(i)^data[k])
	}
	return state
}

func main() {
	for trial := 0; trial < 1000; trial++ {
		prefix := make([]byte, rand.Intn(5000))
		rand.Read(prefix)
		last := make([]byte, 1+rand.Intn(300))
		rand.Read(last)
		old := crc32.Checksum(append(append([]byte{}, prefix...), last...), tab)
		// The state after the prefix, from the old CRC and the last record only.
		statePrefix := unshift(^old, last)
		crcPrefix := ^statePrefix
		edited := append([]byte{0x9c, 0x01}, last...) // a wider length varint, say
		edited[len(edited)-1] ^= 0x02                 // a header count changed
		edited = append(edited, bytes.Repeat([]byte{'t'}, 68)...)
		got := crc32.Update(crcPrefix, tab, edited)
		want := crc32.Checksum(append(append([]byte{}, prefix...), edited...), tab)
		if got != want {
			fmt.Println("mismatch at trial", trial)
			return
		}
	}
	fmt.Println("1000 trials: the edited batch's CRC from the old CRC and the last record alone matches")
}
