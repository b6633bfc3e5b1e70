package entitle

import "strconv"

// Code is a result code of the C ABI (entitle_result in entitle.h). The numbers never change.
type Code uint32

// The result codes. Which error a failure is follows from its code only.
const (
	CodeNullParameter      Code = 1
	CodeInvalidUTF8        Code = 2
	CodeInvalidParameter   Code = 3
	CodePanic              Code = 4
	CodeBufferTooSmall     Code = 5
	CodeOutOfRange         Code = 6
	CodeIO                 Code = 7
	CodeInvalidCatalog     Code = 8
	CodeBadMagic           Code = 9
	CodeUnsupportedVersion Code = 10
	CodeCorrupt            Code = 11
	CodeTooLarge           Code = 12
	CodeWrongBase          Code = 13
	CodeFeatureMismatch    Code = 14
	CodeInvalidConfig      Code = 15
	CodeTimeout            Code = 16
	CodeClosed             Code = 17
)

var codeText = map[Code]string{
	CodeNullParameter:      "a required pointer was NULL",
	CodeInvalidUTF8:        "a string is not valid UTF-8",
	CodeInvalidParameter:   "an argument is out of its domain",
	CodePanic:              "the library panicked (a bug: please report it)",
	CodeBufferTooSmall:     "a buffer is too small",
	CodeOutOfRange:         "an index is past the end of a list",
	CodeIO:                 "a file could not be read",
	CodeInvalidCatalog:     "the catalog is invalid",
	CodeBadMagic:           "not an entitle snapshot or delta",
	CodeUnsupportedVersion: "a snapshot or delta format version this library does not read",
	CodeCorrupt:            "snapshot or delta bytes are truncated, corrupt or inconsistent",
	CodeTooLarge:           "the content exceeds what the snapshot format can address",
	CodeWrongBase:          "the delta was made for another base snapshot",
	CodeFeatureMismatch:    "the delta's features do not match the engine's",
	CodeInvalidConfig:      "the sync configuration is invalid",
	CodeTimeout:            "a wait ran out",
	CodeClosed:             "the engine is closed",
}

// String describes the code.
func (c Code) String() string {
	if s, ok := codeText[c]; ok {
		return s
	}
	return "result code " + strconv.FormatUint(uint64(c), 10)
}

// Error is every error this package returns: the library's result code and its detail.
//
// Compare with errors.Is against the sentinel values (ErrInvalidCatalog, ErrClosed, ...), which
// match any *Error of the same code, or read Code with errors.As.
type Error struct {
	// Code is the result code; it alone says what kind of failure this is.
	Code Code
	// Detail is the library's description of this failure (for a catalog, it starts with the path
	// of the offending value: "customers[3].overrides.seats: expected ..."); it may be empty.
	Detail string
}

// Error gives the detail, or the code's description when there is none, prefixed "entitle: ".
func (e *Error) Error() string {
	if e.Detail == "" {
		return "entitle: " + e.Code.String()
	}
	return "entitle: " + e.Detail
}

// Is reports whether target is an *Error with the same code (so errors.Is(err, ErrCorrupt)
// matches every corrupt-data failure whatever its detail).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinel errors, one per result code, for errors.Is.
var (
	ErrNullParameter      = &Error{Code: CodeNullParameter}
	ErrInvalidUTF8        = &Error{Code: CodeInvalidUTF8}
	ErrInvalidParameter   = &Error{Code: CodeInvalidParameter}
	ErrPanic              = &Error{Code: CodePanic}
	ErrBufferTooSmall     = &Error{Code: CodeBufferTooSmall}
	ErrOutOfRange         = &Error{Code: CodeOutOfRange}
	ErrIO                 = &Error{Code: CodeIO}
	ErrInvalidCatalog     = &Error{Code: CodeInvalidCatalog}
	ErrBadMagic           = &Error{Code: CodeBadMagic}
	ErrUnsupportedVersion = &Error{Code: CodeUnsupportedVersion}
	ErrCorrupt            = &Error{Code: CodeCorrupt}
	ErrTooLarge           = &Error{Code: CodeTooLarge}
	ErrWrongBase          = &Error{Code: CodeWrongBase}
	ErrFeatureMismatch    = &Error{Code: CodeFeatureMismatch}
	ErrInvalidConfig      = &Error{Code: CodeInvalidConfig}
	ErrTimeout            = &Error{Code: CodeTimeout}
	ErrClosed             = &Error{Code: CodeClosed}
)
