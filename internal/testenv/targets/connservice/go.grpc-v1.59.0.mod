module example.com/connservice

go 1.22

require (
	github.com/pires/go-proxyproto v0.7.0
	github.com/soheilhy/cmux v0.1.5
	golang.org/x/net v0.14.0
	google.golang.org/grpc v1.59.0
	google.golang.org/protobuf v1.31.0
)

require (
	github.com/golang/protobuf v1.5.3 // indirect
	golang.org/x/sys v0.11.0 // indirect
	golang.org/x/text v0.12.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20230822172742-b8732ec3820d // indirect
)
