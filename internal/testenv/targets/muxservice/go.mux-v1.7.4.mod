module example.com/muxservice

go 1.22

require (
	github.com/go-chi/chi/v5 v5.0.0
	github.com/gorilla/mux v1.7.4
)
