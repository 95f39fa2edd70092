package http

import "github.com/booking-ledger/ledger/adapters/http/listen"

// ServerConfig and NewServer (the connection-level limits, the bounded
// listener) live in adapters/http/listen.
type ServerConfig = listen.ServerConfig

// NewServer is listen.NewServer: the *http.Server for a handler.
var NewServer = listen.NewServer
