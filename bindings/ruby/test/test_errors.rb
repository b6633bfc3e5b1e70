# frozen_string_literal: true

# Errors: each class follows from the C result code; wrong types raise TypeError, values out of
# range ArgumentError / RangeError; nothing crashes the interpreter.
require_relative "test_helper"

class ErrorsTest < Minitest::Test
  include EntitleTest

  def setup
    @engine = Entitle::Engine.from_catalog(catalog)
  end

  def teardown
    @engine.close
  end

  def test_hierarchy
    [Entitle::InvalidArgumentError, Entitle::PanicError, Entitle::FileError, Entitle::CatalogError,
     Entitle::FormatError, Entitle::DeltaError, Entitle::ConfigError, Entitle::TimeoutError,
     Entitle::ClosedError].each { |cls| assert_operator cls, :<, Entitle::Error }
    assert_operator Entitle::Error, :<, StandardError
    assert_nil Entitle::Error.new("x").code
    assert_equal 8, Entitle::CatalogError.new("x", 8).code
  end

  # Each kind of failure raises the class of its C result code, with that code.
  def test_each_failure_has_the_class_and_code_of_its_kind
    Dir.mktmpdir do |dir|
      snaps = snapshots(dir)
      v1 = File.binread(snaps[:v1])
      newer = v1.dup
      newer.setbyte(8, 99) # the format version, after the 8-byte magic
      v2 = Entitle::Engine.from_file(snaps[:v2])
      closed = Entitle::Engine.from_file(snaps[:v1])
      closed.close
      cases = [
        [-> { Entitle::Engine.from_catalog("{") }, Entitle::CatalogError, 8],
        [-> { Entitle::Engine.from_snapshot("junk") }, Entitle::FormatError, 9],
        [-> { Entitle::Engine.from_snapshot(newer) }, Entitle::FormatError, 10],
        [-> { Entitle::Engine.from_snapshot(v1[0, 100]) }, Entitle::FormatError, 11],
        [-> { v2.apply_delta("junk") }, Entitle::FormatError, 9],
        [-> { v2.apply_delta(File.binread(snaps[:delta])) }, Entitle::DeltaError, 13],
        [-> { Entitle::Engine.from_file(File.join(dir, "missing.snap")) }, Entitle::FileError, 7],
        [-> { Entitle::Engine.connect("ftp://example.invalid") }, Entitle::ConfigError, 15],
        [-> { Entitle::Engine.from_catalog("\xff".b) }, Entitle::InvalidArgumentError, 2],
        [-> { closed.replace(File.binread(snaps[:v2])) }, Entitle::ClosedError, 17],
      ]
      cases.each do |call, cls, code|
        error = assert_raises(Entitle::Error) { call.call }
        assert_instance_of cls, error, "code #{code}"
        assert_equal code, error.code
      end
    ensure
      v2&.close
    end
  end

  def test_catalog_error_names_the_path
    bad = catalog
    bad["customers"][3]["overrides"]["projects"] = 1.5
    error = assert_raises(Entitle::CatalogError) { Entitle::Engine.from_catalog(bad) }
    assert_match(/\Acustomers\[3\]\.overrides\.projects: /, error.message)
    assert_equal 8, error.code
    error = assert_raises(Entitle::InvalidArgumentError) { Entitle::Engine.from_catalog("\xff".b) }
    assert_equal 2, error.code # INVALID_UTF8
  end

  def test_file_errors
    Dir.mktmpdir do |dir|
      missing = File.join(dir, "missing.snap")
      error = assert_raises(Entitle::FileError) { Entitle::Engine.from_file(missing) }
      assert_equal 7, error.code
      assert_includes error.message, missing
      garbage = File.join(dir, "garbage.snap")
      File.binwrite(garbage, "ENTITLE\0garbage")
      error = assert_raises(Entitle::Error) { Entitle::Engine.from_file(garbage) }
      assert_includes [9, 10, 11, 8], error.code
    end
  end

  def test_format_errors
    Dir.mktmpdir do |dir|
      bytes = File.binread(snapshots(dir)[:v1])
      error = assert_raises(Entitle::FormatError) { Entitle::Engine.from_snapshot(bytes[0, bytes.size / 2]) }
      assert_equal 11, error.code # CORRUPT (truncated)
      error = assert_raises(Entitle::FormatError) { Entitle::Engine.from_snapshot("nope") }
      assert_includes [9, 11], error.code
    end
  end

  def test_config_errors
    error = assert_raises(Entitle::ConfigError) { Entitle::Engine.connect("ftp://example.com") }
    assert_equal 15, error.code
    error = assert_raises(Entitle::ConfigError) { Entitle::Engine.connect("http://127.0.0.1:9", token: "a\nb") }
    assert_equal 15, error.code
  end

  def test_invalid_utf8_in_check
    error = assert_raises(Entitle::InvalidArgumentError) { @engine.check("cus\xff".b, "sso") }
    assert_equal 2, error.code
    assert_raises(Entitle::InvalidArgumentError) { @engine.entitlements("cus\xff".b) }
  end

  # A String in another encoding is transcoded to UTF-8; one that cannot be raises the encoding
  # error rather than being looked up by its raw bytes, which can spell another, valid UTF-8 id.
  def test_strings_that_cannot_be_transcoded_raise
    engine = Entitle::Engine.from_catalog(
      "features" => [{"key" => "sso", "type" => "flag", "default" => false}],
      "customers" => [{"id" => "caf\u00C1", "overrides" => {"sso" => true}}]
    )
    # "caf\xC3\x81": 0x81 has no character in Windows-1252, and the bytes are UTF-8 for "cafÁ".
    undefined = "caf\xC3\x81".dup.force_encoding(Encoding::Windows_1252)
    [-> { engine.enabled?(undefined, "sso") }, -> { engine.check(undefined, "sso") },
     -> { engine.limit("cus_pro", undefined.dup) }, -> { engine.feature("sso").check_many([undefined]) },
     -> { engine.entitlements(undefined) }].each do |call|
      assert_raises(Encoding::UndefinedConversionError) { call.call }
    end
    unpaired = "\x00\xD8a\x00".dup.force_encoding(Encoding::UTF_16LE) # a lone surrogate
    assert_raises(Encoding::InvalidByteSequenceError) { engine.enabled?(unpaired, "sso") }
    assert engine.enabled?("caf\u00C1".encode(Encoding::Windows_1252), "sso") # transcodable: found
  ensure
    engine&.close
  end

  # The error classes are defined in Ruby and kept by the extension: compaction must not move
  # them under it (it did, and the next error raised crashed the interpreter).
  def test_errors_after_compaction
    skip "GC.verify_compaction_references is not available" unless GC.respond_to?(:verify_compaction_references)

    code = <<~RUBY
      engine = Entitle::Engine.from_catalog(ARGV[0])
      GC.verify_compaction_references(double_heap: true, toward: :empty)
      errors = []
      [-> { engine.check("\\xff".b, "sso") }, -> { Entitle::Engine.from_snapshot("junk") },
       -> { Entitle::Engine.from_catalog("{") }, -> { Entitle::Engine.connect("ftp://x") },
       -> { engine.close; engine.enabled?("a", "b") }].each do |call|
        call.call
      rescue Entitle::Error => e
        errors << "\#{e.class.name}:\#{e.code}"
      end
      puts errors.join(" ")
    RUBY
    out, err, status, = run_ruby(code, JSON.generate(catalog))
    assert status&.success?, err
    assert_equal "Entitle::InvalidArgumentError:2 Entitle::FormatError:9 Entitle::CatalogError:8 " \
                 "Entitle::ConfigError:15 Entitle::ClosedError:17", out.strip
  end

  # The detail of a failure is the failed call's own even when Ruby code runs, on the same thread,
  # between the library's failure and the raise: a signal trap that fails a call of its own
  # replaced it (the detail is kept per native thread and was read after the GVL came back).
  def test_error_detail_is_the_failed_calls_own
    code = <<~RUBY
      engine = Entitle::Engine.from_catalog(ARGV[0])
      trapped = false
      trap("USR1") do
        trapped = true
        engine.check("\\xff".b, "sso") # InvalidArgumentError, detail "customer is not valid UTF-8"
      rescue Entitle::InvalidArgumentError
        nil
      end
      customers = Array.new(400_000) { |i| {"id" => "cus_\#{i}", "overrides" => {"sso" => true}} }
      customers << {"id" => "bad", "overrides" => {"sso" => 1.5}}
      json = JSON.generate("features" => [{"key" => "sso", "type" => "flag", "default" => false}],
                           "customers" => customers)
      Thread.new { sleep 0.05; Process.kill("USR1", Process.pid) } # lands while the catalog loads
      begin
        Entitle::Engine.from_catalog(json)
      rescue Entitle::CatalogError => e
        puts "\#{trapped} \#{e.message}"
      end
    RUBY
    out, err, status, = run_ruby(code, JSON.generate(catalog))
    assert status&.success?, err
    trapped, message = out.strip.split(" ", 2)
    skip "the catalog loaded before the signal came" unless trapped == "true"
    assert_match(/\Acustomers\[400000\]\.overrides\.sso: /, message)
  end

  def test_wrong_types
    [nil, 1, 1.5, [], Object.new].each do |bad|
      assert_raises(TypeError) { @engine.enabled?(bad, "sso") }
      assert_raises(TypeError) { @engine.limit("cus_pro", bad) }
      assert_raises(TypeError) { @engine.check(bad, "sso") }
      assert_raises(TypeError) { @engine.entitlements(bad) }
    end
    assert_raises(TypeError) { @engine.allows?("cus_pro", "projects", "1") }
    assert_raises(TypeError) { @engine.allows?("cus_pro", "projects", 1.0) }
    assert_raises(TypeError) { @engine.allows?("cus_pro", "projects", 1, requested: nil) }
    assert_raises(TypeError) { @engine.enabled?("cus_pro", "sso", at: "today") }
    assert_raises(TypeError) { Entitle::Engine.from_snapshot(nil) }
    assert_raises(TypeError) { Entitle::Engine.from_catalog(nil) }
    assert_raises(TypeError) { Entitle::Engine.from_catalog([]) }
    assert_raises(TypeError) { Entitle::Engine.from_file(nil) }
    assert_raises(TypeError) { @engine.replace(nil) }
    assert_raises(TypeError) { @engine.wait_ready("soon") }
    assert_raises(TypeError) { Entitle::Engine.connect(nil) }
    assert_raises(TypeError) { Entitle::Engine.connect("http://127.0.0.1:9", poll_interval: "1") }
  end

  def test_values_out_of_range
    assert_raises(ArgumentError) { @engine.allows?("cus_pro", "projects", -1) }
    assert_raises(ArgumentError) { @engine.allows?("cus_pro", "projects", -(2**70)) }
    assert_raises(ArgumentError) { @engine.allows?("cus_pro", "projects", 1, requested: -1) }
    assert_raises(RangeError) { @engine.allows?("cus_pro", "projects", 2**64) }
    assert @engine.allows?("cus_ent", "projects", 2**64 - 1) # u64 max is a valid usage
    assert_raises(RangeError) { @engine.enabled?("cus_pro", "sso", at: 2**64) }
    assert_raises(RangeError) { @engine.enabled?("cus_pro", "sso", at: Float::NAN) }
    assert_raises(ArgumentError) { @engine.wait_ready(-1) }
    assert_raises(ArgumentError) { @engine.wait_ready(Float::NAN) }
    assert_raises(ArgumentError) { Entitle::Engine.connect("http://127.0.0.1:9", poll_interval: 0) }
    assert_raises(ArgumentError) { Entitle::Engine.connect("http://127.0.0.1:9", nope: 1) }
  end

  def test_arity_and_keywords
    assert_raises(ArgumentError) { @engine.enabled?("cus_pro") }
    assert_raises(ArgumentError) { @engine.enabled?("cus_pro", "sso", "x") }
    assert_raises(ArgumentError) { @engine.enabled?("cus_pro", "sso", when: 1) }
    assert_raises(ArgumentError) { @engine.enabled?("cus_pro", "sso", {at: 1}) } # a Hash is not keywords
    assert_raises(ArgumentError) { @engine.allows?("cus_pro", "projects") }
    assert_raises(ArgumentError) { @engine.allows?("cus_pro", "projects", 1, requsted: 2) }
    assert_raises(ArgumentError) { @engine.entitlements }
    assert_raises(ArgumentError) { @engine.wait_ready(1, 2) }
  end

  # A missing argument with keywords given is an arity error, as without them; the keywords'
  # Hash was taken for the missing argument (TypeError: "feature must be a String or Symbol, not
  # Hash").
  def test_keywords_do_not_stand_in_for_a_missing_argument
    sso = @engine.feature("sso")
    projects = @engine.feature("projects")
    [-> { @engine.enabled?("cus_pro", at: AT) }, -> { @engine.limit("cus_pro", at: AT) },
     -> { @engine.check("cus_pro", at: AT) }, -> { @engine.allows?("cus_pro", "projects", requested: 2) },
     -> { sso.enabled?(at: AT) }, -> { projects.limit(at: AT) }, -> { sso.check(at: AT) },
     -> { projects.allows?("cus_pro", requested: 2) }].each do |call|
      error = assert_raises(ArgumentError) { call.call }
      assert_match(/wrong number of arguments/, error.message)
    end
    assert @engine.enabled?("cus_pro", "sso", at: AT) # keywords in their place still work
    assert projects.allows?("cus_pro", 49, requested: 1, at: AT)
    assert_raises(TypeError) { @engine.enabled?("cus_pro", {at: AT}) } # a Hash is not a feature
  end

  def test_engines_cannot_be_made_with_new
    assert_raises(NoMethodError) { Entitle::Engine.new }
    assert_raises(TypeError) { Entitle::Engine.allocate }
  end
end
