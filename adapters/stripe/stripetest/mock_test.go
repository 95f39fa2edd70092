package stripetest

import "testing"

func TestListeningPort(t *testing.T) {
	tests := []struct {
		line, port string
		ok         bool
	}{
		{"Listening for HTTP at address: [::]:40311", "40311", true},
		{"Listening for HTTP at address: 127.0.0.1:12111\n", "12111", true},
		{"Listening for HTTPS at address: [::]:12112", "", false},
		{"Listening for HTTP at address: [::]:", "", false},
		{"Listening for HTTP at address: [::]:x", "", false},
		{"Routing to 419 path(s) and 594 endpoint(s) with 594 validator(s)", "", false},
	}
	for _, tt := range tests {
		port, ok := ListeningPort(tt.line)
		if port != tt.port || ok != tt.ok {
			t.Errorf("ListeningPort(%q) = %q, %v; want %q, %v", tt.line, port, ok, tt.port, tt.ok)
		}
	}
}
