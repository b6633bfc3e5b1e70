# frozen_string_literal: true

# The shared conformance suite (tests/conformance, read from the repository, never a copy): every
# valid file's cases through enabled?, limit, allows?, check and entitlements, and every invalid
# file's expected error. The catalog's exact bytes are handed to the engine (never a re-serialized
# parse: the files rely on duplicate keys, number syntax and 64-bit integers).
require_relative "test_helper"

class ConformanceTest < Minitest::Test
  CATALOG_MARKER = "\n  \"catalog\": "

  # The exact text of the top-level "catalog" value: from its marker to the next top-level key.
  def self.raw_catalog(text)
    start = text.index(CATALOG_MARKER) or raise "no catalog marker"
    start += CATALOG_MARKER.bytesize
    stop = ["\n  \"cases\": ", "\n  \"expect_error\": "].filter_map { |m| text.index(m, start) }.min
    raise "no cases or expect_error after the catalog" unless stop

    text[start...stop].sub(/,\s*\z/, "")
  end

  def self.valid_files = Dir[File.join(EntitleTest::CONFORMANCE, "*.json")].sort

  def self.invalid_files = Dir[File.join(EntitleTest::CONFORMANCE, "invalid", "*.json")].sort

  def test_the_suite_is_there
    assert_operator self.class.valid_files.size, :>=, 17
    assert_operator self.class.invalid_files.size, :>=, 90
  end

  # assert_equal, or assert_nil when nil is expected.
  def assert_value(expected, actual, message)
    expected.nil? ? assert_nil(actual, message) : assert_equal(expected, actual, message)
  end

  def expected_limit(expected)
    case expected
    when nil then 0
    when "unlimited" then Float::INFINITY
    else expected
    end
  end

  def check_case(engine, kase, file)
    name = "#{File.basename(file)}: #{kase["name"]}"
    customer, feature, at = kase.fetch("customer"), kase.fetch("feature"), kase.fetch("at")
    want = kase.fetch("expected")

    decision = engine.check(customer, feature, at: at)
    assert decision.frozen?, name
    feature_type = want.fetch("feature_type")&.to_sym
    assert_value feature_type, decision.feature_type, "#{name}: feature_type"
    assert_equal want.fetch("enabled"), decision.enabled?, "#{name}: enabled"
    want_limit = want.fetch("limit")
    assert_value(want_limit == "unlimited" ? Float::INFINITY : want_limit, decision.limit, "#{name}: limit")
    assert_equal want.fetch("reason").to_sym, decision.reason, "#{name}: reason"

    assert_equal want.fetch("enabled"), engine.enabled?(customer, feature, at: at), "#{name}: enabled?"
    assert_equal expected_limit(want_limit), engine.limit(customer, feature, at: Time.at(at)),
                 "#{name}: limit()"
    entitlements = engine.entitlements(customer, at: at)
    if feature_type.nil?
      refute entitlements.key?(feature), "#{name}: entitlements hold an unknown feature"
    else
      assert_equal decision, entitlements.fetch(feature), "#{name}: entitlements"
    end

    if kase.key?("usage")
      usage = kase.fetch("usage")
      allowed =
        if kase.key?("requested")
          engine.allows?(customer, feature, usage, requested: kase.fetch("requested"), at: at)
        else
          engine.allows?(customer, feature, usage, at: at)
        end
      assert_equal want.fetch("allowed"), allowed, "#{name}: allows?"
    else
      refute want.key?("allowed"), "#{name}: allowed without usage"
    end
  end

  def test_valid_files
    cases = 0
    self.class.valid_files.each do |file|
      text = File.read(file, encoding: "UTF-8")
      doc = JSON.parse(text)
      raw = self.class.raw_catalog(text)
      engine = Entitle::Engine.from_catalog(raw)
      refute_empty doc.fetch("cases"), file
      doc.fetch("cases").each do |kase|
        check_case(engine, kase, file)
        cases += 1
      end
      engine.close
    end
    assert_operator cases, :>, 100
  end

  def test_valid_files_through_snapshots
    # The same answers from the catalog's binary snapshot (entitle build).
    Dir.mktmpdir do |dir|
      self.class.valid_files.each do |file|
        text = File.read(file, encoding: "UTF-8")
        src = File.join(dir, "catalog.json")
        File.binwrite(src, self.class.raw_catalog(text))
        snap = File.join(dir, "catalog.snap")
        EntitleTest.run_cli("build", src, "-o", snap)
        engine = Entitle::Engine.from_snapshot(File.binread(snap))
        JSON.parse(text).fetch("cases").each { |kase| check_case(engine, kase, file) }
        engine.close
      end
    end
  end

  def test_invalid_files
    self.class.invalid_files.each do |file|
      text = File.read(file, encoding: "UTF-8")
      want = JSON.parse(text).fetch("expect_error")
      error = assert_raises(Entitle::CatalogError, file) do
        Entitle::Engine.from_catalog(self.class.raw_catalog(text))
      end
      assert error.message.start_with?("#{want}:"), "#{file}: #{error.message.inspect} should start with #{want}:"
      assert_equal 8, error.code
    end
  end
end
