# frozen_string_literal: true

module Entitle
  # The base of every error the gem raises for a failure reported by the library.
  #
  # #code is the C ABI's result code (an +entitle_result+ of entitle.h); the class follows from the
  # code alone, never from which call failed:
  #
  #   code                                      class
  #   1 NULL_PARAMETER, 2 INVALID_UTF8,
  #   3 INVALID_PARAMETER                       InvalidArgumentError
  #   4 PANIC                                   PanicError
  #   7 IO                                      FileError
  #   8 INVALID_CATALOG                         CatalogError
  #   9 BAD_MAGIC, 10 UNSUPPORTED_VERSION,
  #   11 CORRUPT, 12 TOO_LARGE                  FormatError
  #   13 WRONG_BASE, 14 FEATURE_MISMATCH        DeltaError
  #   15 INVALID_CONFIG                         ConfigError
  #   16 TIMEOUT                                TimeoutError
  #   17 CLOSED                                 ClosedError
  #   any other                                 Error
  #
  # Arguments of the wrong Ruby type raise TypeError, out-of-range numbers ArgumentError or
  # RangeError, and Strings that cannot be transcoded to UTF-8 an EncodingError
  # (Encoding::UndefinedConversionError, Encoding::InvalidByteSequenceError or
  # Encoding::ConverterNotFoundError), as anywhere in Ruby.
  class Error < StandardError
    # The C ABI's result code (Integer), or nil for an error raised from Ruby code.
    attr_reader :code

    def initialize(message = nil, code = nil)
      super(message)
      @code = code if code
    end
  end

  # An argument the library refused: a String that is not valid UTF-8 where text is required.
  class InvalidArgumentError < Error; end

  # The library failed inside a call (a bug: please report it); the call had no effect.
  class PanicError < Error; end

  # A file could not be read; the message names it and the system error.
  class FileError < Error; end

  # The catalog JSON is invalid; the message starts with the path of the offending value, e.g.
  # <tt>customers[3].overrides.seats: expected a whole number or "unlimited"</tt>.
  class CatalogError < Error; end

  # The bytes are not a readable snapshot or delta: wrong magic, a format version this library
  # does not read, truncated or corrupt, or too large.
  class FormatError < Error; end

  # A delta was made for another base snapshot, or for other features, than the engine serves.
  class DeltaError < Error; end

  # The sync configuration is invalid (a URL that is not http:// or https://, a bad token).
  class ConfigError < Error; end

  # A wait ran out of time.
  class TimeoutError < Error; end

  # The engine is closed.
  class ClosedError < Error; end
end
