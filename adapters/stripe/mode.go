package stripe

import "strings"

// KeyLivemode tells the mode of a Stripe API key from its prefix: live for
// sk_live_, rk_live_ and pk_live_, test for sk_test_, rk_test_ and
// pk_test_. known is false for any other string (an empty key, or a
// stand-in key for stripe-mock), whose mode cannot be told.
func KeyLivemode(key string) (live, known bool) {
	for _, kind := range []string{"sk_", "rk_", "pk_"} {
		rest, ok := strings.CutPrefix(key, kind)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(rest, "live_"):
			return true, true
		case strings.HasPrefix(rest, "test_"):
			return false, true
		}
	}
	return false, false
}
