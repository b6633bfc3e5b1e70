# frozen_string_literal: true

# Configures the build of entitle/entitle_ext, the gem's C extension, against the static library
# libentitle.a and its header entitle.h.
#
# Where they are found, first match wins:
#   1. `gem install entitle -- --with-entitle-lib=DIR --with-entitle-include=DIR`
#      (or --with-entitle-dir=PREFIX, meaning PREFIX/lib and PREFIX/include);
#   2. the environment: ENTITLE_LIB_DIR (holds libentitle.a), ENTITLE_INCLUDE_DIR (holds entitle.h);
#   3. inside the entitle repository: target/release (or $CARGO_TARGET_DIR/release) and ffi/include.
# Build the library first, at the repository's root: `cargo build --release -p entitle-ffi`.
# The extension links the library statically: the installed gem needs no shared library.
require "mkmf"

def entitle_abort(message)
  abort <<~MSG

    entitle: #{message}

    The gem's C extension links libentitle.a, the entitle C library, statically. Build it at the
    root of the entitle repository with

        cargo build --release -p entitle-ffi

    then either build the gem from inside the repository (target/release and ffi/include are found
    there), or point the build at the library and its header:

        ENTITLE_LIB_DIR=/path/to/target/release ENTITLE_INCLUDE_DIR=/path/to/ffi/include gem install entitle-*.gem
        gem install entitle-*.gem -- --with-entitle-lib=DIR --with-entitle-include=DIR

  MSG
end

repo = File.expand_path("../../../..", __dir__)
in_repo = File.file?(File.join(repo, "Cargo.toml")) && File.file?(File.join(repo, "ffi", "include", "entitle.h"))

opt_include, opt_lib = dir_config("entitle")
target = ENV.fetch("CARGO_TARGET_DIR", File.join(repo, "target"))
target = File.expand_path(target, repo)

lib_dir = opt_lib || ENV["ENTITLE_LIB_DIR"] || (in_repo ? File.join(target, "release") : nil)
include_dir = opt_include || ENV["ENTITLE_INCLUDE_DIR"] || (in_repo ? File.join(repo, "ffi", "include") : nil)

entitle_abort("no library directory given, and #{repo} is not the entitle repository") if lib_dir.nil?
entitle_abort("no header directory given, and #{repo} is not the entitle repository") if include_dir.nil?
static_lib = File.join(lib_dir, "libentitle.a")
entitle_abort("libentitle.a not found in #{lib_dir}") unless File.file?(static_lib)
entitle_abort("entitle.h not found in #{include_dir}") unless File.file?(File.join(include_dir, "entitle.h"))

# Quoted (mkmf's String#quote): a directory may contain spaces.
$INCFLAGS << " -I#{include_dir.quote}"
$CFLAGS << " -std=gnu11 -O2"
# The library itself, by path (never the shared libentitle.so next to it), then what a Rust static
# library needs from the system (`cargo rustc -- --print native-static-libs`).
$LOCAL_LIBS << " #{static_lib.quote}"
%w[gcc_s util rt pthread m dl].each { |lib| $libs = append_library($libs, lib) }
# Keep the Rust library's symbols out of the extension's dynamic symbol table, and drop unused
# sections: the extension exports Init_entitle_ext only.
$LDFLAGS << " -Wl,--exclude-libs,ALL -Wl,--gc-sections"

entitle_abort("entitle.h in #{include_dir} cannot be compiled") unless have_header("entitle.h")
# Links a test program against the library: a libentitle.a older than the header fails here, with
# a message, rather than as an undefined symbol when Ruby loads the extension.
unless have_func("entitle_engine_check_features", "entitle.h")
  entitle_abort("#{static_lib} lacks functions that #{include_dir}/entitle.h declares: rebuild it")
end
have_func("rb_ext_ractor_safe", "ruby.h")

# Warnings for the extension itself (after the checks: mkmf's test programs are not warning-free).
$CFLAGS << " -Wall -Wextra -Wno-unused-parameter"
$CFLAGS << " -Werror" if ENV["ENTITLE_WERROR"] == "1"

create_makefile("entitle/entitle_ext")
