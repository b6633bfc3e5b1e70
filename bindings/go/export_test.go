package entitle

// EnabledUnguarded exposes enabledUnguarded to the benchmarks (package entitle_test).
var EnabledUnguarded = (*Engine).enabledUnguarded
