#!/bin/bash
# Shows the write system calls a Kafka test service makes on its producing connection:
# the sizes of Produce requests and whether each goes out in one write.
# usage: produce-writes.sh KAFKABROKER SERVICE PORT
#   KAFKABROKER, SERVICE: binaries built from internal/testenv/targets/{kafkabroker,
#   kafkaservice or saramaservice}; PORT: a free port for the service. Needs strace, curl.
set -e
broker=$1 svc=$2 port=$3
out=$(mktemp -d)
"$broker" -topics orders > "$out/broker" 2>&1 & bp=$!
sleep 0.5
addr=$(awk '{print $2}' "$out/broker")
"$svc" -addr 127.0.0.1:$port -broker "$addr" > "$out/service" 2>&1 & sp=$!
sleep 1.5
strace -f -qq -xx -s 12 -e trace=write,writev,sendmsg,sendto -e signal=none -o "$out/strace" -p $sp & st=$!
sleep 1
big=$(head -c 60000 /dev/zero | tr '\0' x)
for q in "/produce?value=one" "/produce?value=one" "/produce-batch?value=b&n=10" "/produce?value=$big" "/produce-batch?value=$big&n=10"; do
	curl -s "127.0.0.1:$port$q" > /dev/null
	sleep 0.5
done
kill $sp; wait $sp || true
kill $bp; wait $bp || true
wait $st || true
# The producing connection: the one whose requests have API key 0 (Produce) in bytes
# 5-6; all its writes, fetches and metadata requests included.
fds=$(grep -E 'write\([0-9]+, "(\\x..){4}\\x00\\x00' "$out/strace" | sed -E 's/^[0-9]+ +//; s/.*write\(([0-9]+),.*/\1/' | sort -u)
for fd in $fds; do
	echo "== fd $fd"
	grep -E "write\($fd," "$out/strace" | sed -E 's/^[0-9]+ +//' | grep -v '"\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00"'
done
rm -r "$out"
