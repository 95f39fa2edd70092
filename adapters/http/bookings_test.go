package http_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/projections"
)

// TestCreateBooking: 201 with booking_id, the status row and a Location;
// the row is in the bookings table and the stream holds BookingRequested.
func TestCreateBooking(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	session := stripe.NewSessionID()
	resource := newResource("room")
	cases := []struct {
		name    string
		req     map[string]any
		session *string
	}{
		{"without session", bookingRequest(resource), nil},
		{"with session, upper-case currency", func() map[string]any {
			r := bookingRequest(resource)
			r["session_id"] = session
			r["currency"] = "EUR"
			r["check_in"], r["check_out"] = "2027-02-01", "2027-02-02"
			return r
		}(), &session},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := h.with(t)
			before := time.Now().Add(-time.Second)
			resp := h.api(http.MethodPost, "/bookings", tc.req)
			if resp.Status != http.StatusCreated {
				t.Fatalf("answer %s, want 201", resp)
			}
			var got struct {
				BookingID *int64 `json:"booking_id"`
				projections.BookingRow
			}
			if err := json.Unmarshal(resp.Body, &got); err != nil {
				t.Fatal(err)
			}
			if got.BookingID == nil || *got.BookingID <= 0 || *got.BookingID != got.ID {
				t.Fatalf("booking_id %v, id %d in %s", got.BookingID, got.ID, resp.Body)
			}
			if loc := resp.Header.Get("Location"); loc != "/bookings/"+itoa(got.ID) {
				t.Errorf("Location %q", loc)
			}
			raw := resp.JSON(t)
			for _, field := range []string{"booking_id", "id", "resource_id", "check_in", "check_out", "status", "payment_status",
				"amount", "currency", "customer_email", "session_id", "payment_intent_id", "created_at", "updated_at", "last_event_position"} {
				if _, ok := raw[field]; !ok {
					t.Errorf("answer lacks %q: %s", field, resp.Body)
				}
			}
			r := got.BookingRow
			if r.ResourceID != tc.req["resource_id"] || r.CheckIn != tc.req["check_in"] || r.CheckOut != tc.req["check_out"] ||
				r.Status != "pending" || r.PaymentStatus != "unpaid" || r.Amount != defaultAmount || r.Currency != "eur" ||
				r.CustomerEmail != tc.req["customer_email"] || r.PaymentIntentID != nil || r.LastEventPosition <= 0 ||
				r.CreatedAt.Before(before) || !r.UpdatedAt.Equal(r.CreatedAt) {
				t.Errorf("row %+v for request %v", r, tc.req)
			}
			if (r.SessionID == nil) != (tc.session == nil) || (tc.session != nil && *r.SessionID != *tc.session) {
				t.Errorf("session_id %v, want %v", r.SessionID, tc.session)
			}
			h.wantStatus(got.ID, "pending", "unpaid")
			h.wantStream(got.ID, evRequested)
			// The answer is the stored row.
			stored := h.api(http.MethodGet, "/bookings/"+itoa(got.ID), nil)
			var row projections.BookingRow
			if err := json.Unmarshal(stored.Body, &row); err != nil {
				t.Fatal(err)
			}
			if !rowsEqual(row, r) {
				t.Errorf("stored row %+v, answered %+v", row, r)
			}
		})
	}
}

func rowsEqual(a, b projections.BookingRow) bool {
	eq := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.ID == b.ID && a.ResourceID == b.ResourceID && a.CheckIn == b.CheckIn && a.CheckOut == b.CheckOut &&
		a.Status == b.Status && a.PaymentStatus == b.PaymentStatus && a.Amount == b.Amount && a.Currency == b.Currency &&
		a.CustomerEmail == b.CustomerEmail && eq(a.SessionID, b.SessionID) && eq(a.PaymentIntentID, b.PaymentIntentID) &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) && a.LastEventPosition == b.LastEventPosition
}

// TestCreateBookingRejectsInvalidInput: 400 naming the field, and nothing
// written, not even a booking id drawn from the sequence.
func TestCreateBookingRejectsInvalidInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sendsInvalidRequests("invalid bookings")
	with := func(key string, value any) string {
		r := bookingRequest("room-1")
		r[key] = value
		b, _ := json.Marshal(r)
		return string(b)
	}
	without := func(key string) string {
		r := bookingRequest("room-1")
		delete(r, key)
		b, _ := json.Marshal(r)
		return string(b)
	}
	valid := with("resource_id", "room-1")
	cases := []struct {
		name  string
		body  string
		field string // fragment the error must contain
	}{
		{"resource_id missing", without("resource_id"), "resource_id"},
		{"resource_id blank", with("resource_id", "   "), "resource_id"},
		{"resource_id a number", with("resource_id", 12), "resource_id"},
		{"resource_id too long", with("resource_id", strings.Repeat("r", 101)), "resource_id"},
		{"check_in missing", without("check_in"), "check_in"},
		{"check_in not a date", with("check_in", "2027-02-30"), "check_in"},
		{"check_in other format", with("check_in", "10.01.2027"), "check_in"},
		{"check_out before check_in", with("check_out", "2027-01-09"), "check_out"},
		{"check_out equal to check_in", with("check_out", defaultCheckIn), "check_out"},
		{"amount zero", with("amount", 0), "amount"},
		{"amount negative", with("amount", -100), "amount"},
		{"amount a string", with("amount", "36000"), "amount"},
		{"amount a fraction", with("amount", 360.5), "amount"},
		{"amount missing", without("amount"), "amount"},
		{"currency missing", without("currency"), "currency"},
		{"currency four letters", with("currency", "euro"), "currency"},
		{"currency digits", with("currency", "978"), "currency"},
		{"customer_email missing", without("customer_email"), "customer_email"},
		{"customer_email without @", with("customer_email", "guest.example.com"), "customer_email"},
		{"customer_email with a space", with("customer_email", "guest @example.com"), "customer_email"},
		{"session_id not cs_", with("session_id", "pi_3abc"), "session_id"},
		{"session_id only the prefix", with("session_id", "cs_"), "session_id"},
		{"session_id with punctuation", with("session_id", "cs_test_a1;DROP"), "session_id"},
		{"unknown field", strings.Replace(valid, `"amount"`, `"nights":3,"amount"`, 1), "nights"},
		{"invalid JSON", `{"resource_id": "room-1",`, "invalid JSON"},
		{"data after the object", valid + `{}`, "invalid JSON"},
		{"not an object", `["room-1"]`, "invalid JSON"},
		{"empty body", ``, "invalid JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := h.with(t)
			before := h.counts()
			seq := h.store.lastBookingID(t)
			h.api(http.MethodPost, "/bookings", tc.body).wantError(t, http.StatusBadRequest, tc.field)
			if after := h.counts(); after != before {
				t.Errorf("rows changed: %+v → %+v", before, after)
			}
			if s := h.store.lastBookingID(t); s != seq {
				t.Errorf("booking_id_seq moved from %d to %d", seq, s)
			}
		})
	}
	t.Run("several fields at once are all named", func(t *testing.T) {
		h := h.with(t)
		body := `{"resource_id": "", "check_in": "x", "check_out": "2027-01-01", "amount": 0, "currency": "e", "customer_email": "x"}`
		h.api(http.MethodPost, "/bookings", body).
			wantError(t, http.StatusBadRequest, "resource_id", "check_in", "amount", "currency", "customer_email")
	})
	// The same body, made valid, is accepted: the cases fail for their field.
	t.Run("control: valid body", func(t *testing.T) {
		h := h.with(t)
		if resp := h.api(http.MethodPost, "/bookings", valid); resp.Status != http.StatusCreated {
			t.Fatalf("valid body: %s", resp)
		}
	})
}

// TestCreateBookingConflict: 409 when the stay overlaps a confirmed booking
// of the same resource; pending bookings, adjacent stays and other resources
// do not conflict.
func TestCreateBookingConflict(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	resource := newResource("conflict")
	confirmed := h.newBooking(resource, defaultCheckIn, defaultCheckOut)
	h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(confirmed)), hmacSigner).
		wantBody(t, http.StatusOK, `{"status":"success"}`)
	h.wantStatus(confirmed.ID, "confirmed", "paid")
	pendingOne := h.newBooking(resource, "2027-02-01", "2027-02-05")

	cases := []struct {
		name              string
		resource          string
		checkIn, checkOut string
		want              int
	}{
		{"same stay", resource, defaultCheckIn, defaultCheckOut, http.StatusConflict},
		{"overlapping the first night", resource, "2027-01-08", "2027-01-11", http.StatusConflict},
		{"overlapping the last night", resource, "2027-01-12", "2027-01-20", http.StatusConflict},
		{"inside", resource, "2027-01-11", "2027-01-12", http.StatusConflict},
		{"around", resource, "2027-01-01", "2027-01-31", http.StatusConflict},
		{"ending on check-in day", resource, "2027-01-05", defaultCheckIn, http.StatusCreated},
		{"starting on check-out day", resource, defaultCheckOut, "2027-01-15", http.StatusCreated},
		{"overlapping a pending booking only", resource, "2027-02-03", "2027-02-07", http.StatusCreated},
		{"another resource", newResource("conflict"), defaultCheckIn, defaultCheckOut, http.StatusCreated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := h.with(t)
			req := bookingRequest(tc.resource)
			req["check_in"], req["check_out"] = tc.checkIn, tc.checkOut
			before := h.counts()
			resp := h.api(http.MethodPost, "/bookings", req)
			if tc.want == http.StatusCreated {
				if resp.Status != http.StatusCreated {
					t.Fatalf("answer %s, want 201", resp)
				}
				return
			}
			resp.wantError(t, http.StatusConflict)
			if after := h.counts(); after != before {
				t.Errorf("rows changed: %+v → %+v", before, after)
			}
		})
	}
	t.Run("session id of another booking", func(t *testing.T) {
		h := h.with(t)
		session := stripe.NewSessionID()
		req := bookingRequest(newResource("conflict"))
		req["session_id"] = session
		h.createBooking(req)
		req = bookingRequest(newResource("conflict"))
		req["session_id"] = session
		h.api(http.MethodPost, "/bookings", req).wantError(t, http.StatusConflict, "session_id")
	})
	h.wantStatus(pendingOne.ID, "pending", "unpaid")
}

// TestAPIRequiresToken: every bookings endpoint answers 401 without the
// right bearer token, and writes nothing.
func TestAPIRequiresToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sendsInvalidRequests("missing and wrong tokens")
	b := h.createBooking(bookingRequest(newResource("token")))
	body, _ := json.Marshal(bookingRequest(newResource("token")))
	endpoints := []struct {
		method, path string
		body         []byte
	}{
		{http.MethodPost, "/bookings", body},
		{http.MethodGet, "/bookings/" + itoa(b.ID), nil},
		{http.MethodGet, "/bookings", nil},
		{http.MethodGet, "/bookings?status=pending", nil},
	}
	auths := []struct {
		name  string
		value []string
	}{
		{"no header", nil},
		{"empty", []string{""}},
		{"wrong token", []string{"Bearer wrong-token"}},
		{"token prefix", []string{"Bearer test-toke"}},
		{"token with suffix", []string{"Bearer test-token2"}},
		{"token without scheme", []string{testToken}},
		{"basic scheme", []string{"Basic dGVzdC10b2tlbjo="}},
		{"webhook secret", []string{"Bearer " + testSecret}},
	}
	for _, e := range endpoints {
		for _, a := range auths {
			t.Run(e.method+" "+e.path+"/"+a.name, func(t *testing.T) {
				h := h.with(t)
				hdr := http.Header{"Content-Type": {"application/json"}}
				if a.value != nil {
					hdr["Authorization"] = a.value
				}
				before := h.counts()
				resp := h.do(e.method, e.path, hdr, e.body)
				resp.wantError(t, http.StatusUnauthorized)
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
				}
				if strings.Contains(string(resp.Body), testToken) {
					t.Errorf("401 body reveals the token: %s", resp.Body)
				}
				if after := h.counts(); after != before {
					t.Errorf("rows changed: %+v → %+v", before, after)
				}
			})
		}
		// Control: the same request with the token goes through.
		t.Run(e.method+" "+e.path+"/right token", func(t *testing.T) {
			h := h.with(t)
			resp := h.api(e.method, e.path, e.body)
			if resp.Status != http.StatusOK && resp.Status != http.StatusCreated {
				t.Errorf("with the token: %s", resp)
			}
		})
	}
	t.Run("webhook and health need no token", func(t *testing.T) {
		h := h.with(t)
		if resp := h.do(http.MethodGet, "/healthz", nil, nil); resp.Status != http.StatusOK {
			t.Errorf("/healthz: %s", resp)
		}
		ev := h.buildEvent("customer.created", testBooking(b))
		h.deliver(ev, stripeGoSigner).wantBody(t, http.StatusOK, `{"status":"ignored"}`)
	})
}

// TestGetBooking: the row as an object; 404 for an unknown id, 400 for one
// that is not an id.
func TestGetBooking(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sendsInvalidRequests("malformed ids, other methods")
	b := h.createBooking(bookingRequest(newResource("get")))
	h.deliver(h.buildEvent(stripe.EventCheckoutSessionCompleted, testBooking(b)), stripeGoSigner).
		wantBody(t, http.StatusOK, `{"status":"success"}`)

	resp := h.api(http.MethodGet, "/bookings/"+itoa(b.ID), nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("answer %s", resp)
	}
	var row projections.BookingRow
	if err := json.Unmarshal(resp.Body, &row); err != nil {
		t.Fatal(err)
	}
	if row.ID != b.ID || row.Status != "confirmed" || row.PaymentStatus != "paid" || row.SessionID == nil ||
		row.PaymentIntentID == nil || row.LastEventPosition <= b.LastEventPosition || row.UpdatedAt.Before(b.CreatedAt) {
		t.Errorf("row %+v after confirmation of %+v", row, b.BookingRow)
	}
	if stored := h.storedRow(b.ID); !rowsEqual(row, stored) {
		t.Errorf("answer %+v, table %+v", row, stored)
	}

	h.api(http.MethodGet, "/bookings/"+itoa(b.ID+1000), nil).wantBody(t, http.StatusNotFound, `{"error":"booking not found"}`)
	for _, bad := range []string{"abc", "0", "-1", "1.5", "99999999999999999999"} {
		h.api(http.MethodGet, "/bookings/"+bad, nil).wantError(t, http.StatusBadRequest, "id")
	}
	resp = h.api(http.MethodDelete, "/bookings/"+itoa(b.ID), nil)
	resp.wantError(t, http.StatusMethodNotAllowed)
	if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "GET") || strings.Contains(allow, "DELETE") {
		t.Errorf("Allow %q", allow)
	}
	h.wantStatus(b.ID, "confirmed", "paid")
}

type bookingList struct {
	Bookings  []projections.BookingRow `json:"bookings"`
	NextAfter *int64                   `json:"next_after"`
}

func (h *harness) list(query string) bookingList {
	h.t.Helper()
	resp := h.api(http.MethodGet, "/bookings"+query, nil)
	if resp.Status != http.StatusOK {
		h.t.Fatalf("GET /bookings%s: %s", query, resp)
	}
	raw := resp.JSON(h.t)
	if _, ok := raw["next_after"]; !ok {
		h.t.Errorf("GET /bookings%s: no next_after field: %s", query, resp.Body)
	}
	if _, ok := raw["bookings"].([]any); !ok {
		h.t.Errorf("GET /bookings%s: bookings is not an array: %s", query, resp.Body)
	}
	var l bookingList
	if err := json.Unmarshal(resp.Body, &l); err != nil {
		h.t.Fatal(err)
	}
	return l
}

func ids(rows []projections.BookingRow) []int64 {
	out := make([]int64, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}

// TestListBookings: filters by status and payment status, pages by id with
// limit/after and next_after, and rejects unknown filter values.
func TestListBookings(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sendsInvalidRequests("unknown statuses, out-of-range paging")
	resource := newResource("list")
	// Bookings in every state: confirmed/paid ×2, pending/unpaid ×2,
	// cancelled/failed, cancelled/paid (conflict).
	c1 := h.newBooking(resource, "2027-04-01", "2027-04-03")
	p1 := h.newBooking(resource, "2027-04-02", "2027-04-04")
	c2 := h.newBooking(resource, "2027-05-01", "2027-05-03")
	f1 := h.newBooking(resource, "2027-06-01", "2027-06-03")
	x1 := h.newBooking(resource, "2027-05-02", "2027-05-04")
	p2 := h.newBooking(resource, "2027-07-01", "2027-07-03")
	for i, step := range []struct {
		b   createdBooking
		typ string
	}{
		{c1, stripe.EventCheckoutSessionCompleted},
		{c2, stripe.EventPaymentIntentSucceeded},
		{f1, stripe.EventPaymentIntentPaymentFailed},
		{x1, stripe.EventCheckoutSessionCompleted},
	} {
		h.deliver(h.buildEvent(step.typ, testBooking(step.b)), pickSigner(i)).wantBody(t, http.StatusOK, `{"status":"success"}`)
	}
	h.wantStatus(x1.ID, "cancelled", "paid")
	h.wantStatus(f1.ID, "cancelled", "failed")
	all := []int64{c1.ID, p1.ID, c2.ID, f1.ID, x1.ID, p2.ID}

	filters := []struct {
		query string
		want  []int64
	}{
		{"", all},
		{"?status=confirmed&payment_status=paid", []int64{c1.ID, c2.ID}},
		{"?status=confirmed", []int64{c1.ID, c2.ID}},
		{"?payment_status=paid", []int64{c1.ID, c2.ID, x1.ID}},
		{"?status=cancelled", []int64{f1.ID, x1.ID}},
		{"?status=cancelled&payment_status=failed", []int64{f1.ID}},
		{"?status=pending&payment_status=unpaid", []int64{p1.ID, p2.ID}},
		{"?status=pending&payment_status=paid", []int64{}},
		{"?payment_status=refunded", []int64{}},
	}
	for _, f := range filters {
		t.Run("filter "+f.query, func(t *testing.T) {
			h := h.with(t)
			l := h.list(f.query)
			if got := ids(l.Bookings); !slices.Equal(got, f.want) {
				t.Errorf("ids %v, want %v", got, f.want)
			}
			if l.NextAfter != nil {
				t.Errorf("next_after %d on the only page", *l.NextAfter)
			}
			for _, r := range l.Bookings {
				s, p := h.status(r.ID)
				if string(r.Status) != s || string(r.PaymentStatus) != p {
					t.Errorf("booking %d listed as %s/%s, table has %s/%s", r.ID, r.Status, r.PaymentStatus, s, p)
				}
			}
		})
	}

	t.Run("paging", func(t *testing.T) {
		h := h.with(t)
		for _, limit := range []int{1, 2, 4, 5, 6, 7} {
			var got []int64
			after := ""
			for pages := 0; ; pages++ {
				if pages > len(all) {
					t.Fatalf("limit %d: more pages than bookings", limit)
				}
				l := h.list("?limit=" + itoa(int64(limit)) + after)
				if len(l.Bookings) > limit {
					t.Fatalf("limit %d: page of %d", limit, len(l.Bookings))
				}
				got = append(got, ids(l.Bookings)...)
				if l.NextAfter == nil {
					break
				}
				if len(l.Bookings) != limit || *l.NextAfter != l.Bookings[len(l.Bookings)-1].ID {
					t.Fatalf("limit %d: next_after %d after page %v", limit, *l.NextAfter, ids(l.Bookings))
				}
				after = "&after=" + itoa(*l.NextAfter)
			}
			if !slices.Equal(got, all) {
				t.Errorf("limit %d: pages gave %v, want %v", limit, got, all)
			}
		}
		// Paging composes with the filters.
		l := h.list("?payment_status=paid&limit=2")
		if got := ids(l.Bookings); !slices.Equal(got, []int64{c1.ID, c2.ID}) || l.NextAfter == nil || *l.NextAfter != c2.ID {
			t.Fatalf("first filtered page %v, next_after %v", got, l.NextAfter)
		}
		l = h.list("?payment_status=paid&limit=2&after=" + itoa(*l.NextAfter))
		if got := ids(l.Bookings); !slices.Equal(got, []int64{x1.ID}) || l.NextAfter != nil {
			t.Errorf("second filtered page %v, next_after %v", got, l.NextAfter)
		}
		// after is exclusive.
		if got := ids(h.list("?after=" + itoa(c2.ID)).Bookings); !slices.Equal(got, []int64{f1.ID, x1.ID, p2.ID}) {
			t.Errorf("after=%d: %v", c2.ID, got)
		}
	})

	for _, bad := range []struct{ query, field string }{
		{"?status=paid", "status"},
		{"?status=Confirmed", "status"},
		{"?status=confirmed%20", "status"},
		{"?payment_status=pending", "payment_status"},
		{"?payment_status=bogus", "payment_status"},
		{"?limit=0", "limit"},
		{"?limit=1001", "limit"},
		{"?limit=ten", "limit"},
		{"?after=-1", "after"},
		{"?after=x", "after"},
	} {
		t.Run("reject "+bad.query, func(t *testing.T) {
			h := h.with(t)
			h.api(http.MethodGet, "/bookings"+bad.query, nil).wantError(t, http.StatusBadRequest, bad.field)
		})
	}
}
