# frozen_string_literal: true

# The Ruby API: constructors, lookups and their arguments, Decision, entitlements, updates,
# open with a block, close, errors chosen from the C result code, and wrong types.
require_relative "test_helper"
require "pathname"

class ApiTest < Minitest::Test
  include EntitleTest

  def setup
    @engine = Entitle::Engine.from_catalog(catalog)
  end

  def teardown
    @engine.close
  end

  def test_lookups
    assert_same true, @engine.enabled?("cus_pro", "sso")
    assert_same false, @engine.enabled?("nobody", "sso")
    assert_equal 50, @engine.limit("cus_pro", "projects")
    assert_equal Float::INFINITY, @engine.limit("cus_ent", "projects")
    assert_equal 5, @engine.limit("cus_pro", "seats") # per unit, quantity 5
    assert_equal 0, @engine.limit("cus_pro", "sso") # a flag
    assert_equal 0, @engine.limit("cus_pro", "nope") # unknown feature
    assert_equal 3, @engine.limit("nobody", "projects") # the default
    assert @engine.allows?("cus_pro", "projects", 49)
    refute @engine.allows?("cus_pro", "projects", 50)
    assert @engine.allows?("cus_pro", "projects", 48, requested: 2)
    refute @engine.allows?("cus_pro", "projects", 48, requested: 3)
    assert @engine.allows?("cus_ent", "projects", 2**63 - 1)
    refute @engine.allows?("cus_pro", "nope", 0)
  end

  def test_symbols_and_encodings
    assert @engine.enabled?(:cus_pro, :sso)
    assert @engine.enabled?("cus_pro".encode("UTF-16LE"), "sso") # transcoded to UTF-8
    assert @engine.enabled?("cus_pro".b, "sso".encode("US-ASCII"))
    refute @engine.enabled?("cus_pro\xff".b, "sso") # bytes that are not UTF-8 never match
  end

  def test_at_takes_time_integer_and_float
    assert @engine.enabled?("cus_cancelling", "sso", at: AT)
    assert @engine.enabled?("cus_cancelling", "sso", at: Time.at(AT + 3599))
    assert @engine.enabled?("cus_cancelling", "sso", at: AT + 3599.9) # floored
    refute @engine.enabled?("cus_cancelling", "sso", at: AT + 3600) # cancel_at is not granting
    refute @engine.enabled?("cus_cancelling", "sso") # now is after cancel_at
    assert @engine.enabled?("cus_cancelling", "sso", at: nil) == @engine.enabled?("cus_cancelling", "sso")
    assert_equal 50, @engine.limit("cus_cancelling", "projects", at: AT)
    assert @engine.allows?("cus_cancelling", "projects", 1, at: AT)
    assert_equal :subscription, @engine.check("cus_cancelling", "sso", at: Time.at(AT)).reason
    assert_equal :default, @engine.entitlements("cus_cancelling", at: AT + 7200)["sso"].reason
  end

  def test_decision
    d = @engine.check("cus_pro", "projects")
    assert d.frozen?
    assert Ractor.shareable?(d)
    assert_equal :limit, d.feature_type
    assert d.enabled?
    refute d.unlimited?
    assert_equal 50, d.limit
    assert_equal :subscription, d.reason
    assert_equal 0, d.version
    assert_equal({feature_type: :limit, enabled: true, limit: 50, reason: :subscription, version: 0}, d.to_h)
    assert_equal d, @engine.check("cus_pro", "projects")
    assert_equal d.hash, @engine.check("cus_pro", "projects").hash
    refute_equal d, @engine.check("cus_ent", "projects")
    assert_equal "#<Entitle::Decision feature_type=:limit enabled=true limit=50 reason=:subscription version=0>",
                 d.inspect
    case d
    in {enabled: true, reason: :subscription} then pass
    end

    unlimited = @engine.check("cus_ent", "projects")
    assert unlimited.unlimited?
    assert_equal Float::INFINITY, unlimited.limit
    flag = @engine.check("cus_override", "sso")
    assert_equal [:flag, true, nil, :override], [flag.feature_type, flag.enabled?, flag.limit, flag.reason]
    unknown = @engine.check("cus_pro", "nope")
    assert_nil unknown.feature_type
    assert_equal :feature_not_found, unknown.reason
    assert_equal :customer_not_found, @engine.check("nobody", "sso").reason
    assert_raises(NoMethodError) { Entitle::Decision.new }
  end

  def test_entitlements
    all = @engine.entitlements("cus_pro")
    assert_equal %w[sso projects seats api_calls], all.keys
    assert all.keys.all?(&:frozen?)
    assert_equal Encoding::UTF_8, all.keys.first.encoding
    assert_equal @engine.check("cus_pro", "seats"), all["seats"]
    assert_equal :customer_not_found, @engine.entitlements("nobody")["projects"].reason
  end

  def test_constructors
    Dir.mktmpdir do |dir|
      paths = snapshots(dir)
      from_file = Entitle::Engine.from_file(paths[:v1])
      assert_equal 1, from_file.version
      from_path = Entitle::Engine.from_file(Pathname.new(paths[:v2]))
      assert_equal 2, from_path.version
      from_bytes = Entitle::Engine.from_snapshot(File.binread(paths[:v1]))
      assert_equal 50, from_bytes.limit("cus_pro", "projects")
      json = File.join(dir, "catalog.json")
      File.write(json, JSON.generate(catalog))
      assert_equal 50, Entitle::Engine.from_file(json).limit("cus_pro", "projects")
      assert_equal 50, Entitle::Engine.from_catalog(JSON.generate(catalog)).limit("cus_pro", "projects")
      [from_file, from_path, from_bytes].each(&:close)
    end
  end

  # A JSON String in another encoding is text like any other: transcoded, as ids are (a UTF-16
  # String was read as bytes, "invalid JSON"; a Latin-1 one "not valid UTF-8").
  def test_catalog_strings_in_other_encodings
    latin = {"features" => [{"key" => "sso", "type" => "flag", "default" => false}],
             "customers" => [{"id" => "caf\u00E9", "overrides" => {"sso" => true}}]}
    json = JSON.generate(latin)
    [json.encode(Encoding::UTF_16LE), json.encode(Encoding::ISO_8859_1), json.b].each do |text|
      engine = Entitle::Engine.from_catalog(text)
      assert engine.enabled?("caf\u00E9", "sso"), text.encoding.name
      engine.close
    end
    assert_raises(Encoding::UndefinedConversionError) do
      Entitle::Engine.from_catalog("{\"x\": \"\x81\"}".dup.force_encoding(Encoding::Windows_1252))
    end
  end

  def test_open_with_a_block_closes
    Dir.mktmpdir do |dir|
      paths = snapshots(dir)
      kept = nil
      answer = Entitle::Engine.open(paths[:v1]) do |engine|
        kept = engine
        engine.limit("cus_pro", "projects")
      end
      assert_equal 50, answer
      assert kept.closed?
      engine = Entitle::Engine.open(paths[:v1])
      refute engine.closed?
      engine.close
      assert_raises(ArgumentError) { Entitle::Engine.open(paths[:v1], token: "x") }
      assert_raises(RuntimeError) { Entitle::Engine.open(paths[:v1]) { raise "boom" } }
    end
  end

  def test_replace_and_apply_delta
    Dir.mktmpdir do |dir|
      paths = snapshots(dir)
      engine = Entitle::Engine.from_file(paths[:v1])
      assert_equal 2, engine.apply_delta(File.binread(paths[:delta]))
      assert_equal 60, engine.limit("cus_pro", "projects")
      assert_equal 2, engine.check("cus_pro", "projects").version
      error = assert_raises(Entitle::DeltaError) { engine.apply_delta(File.binread(paths[:delta])) }
      assert_equal 13, error.code # WRONG_BASE: the delta's base is v1
      assert_equal 60, engine.limit("cus_pro", "projects") # kept
      assert_same engine, engine.replace(File.binread(paths[:v1]))
      assert_equal 1, engine.version
      engine.replace_file(paths[:v2])
      assert_equal 2, engine.version
      error = assert_raises(Entitle::FormatError) { engine.replace("not a snapshot") }
      assert_equal 9, error.code # BAD_MAGIC
      assert_equal 2, engine.version
      engine.close
    end
  end

  def test_close_is_idempotent_and_later_calls_raise
    engine = Entitle::Engine.from_catalog(catalog)
    refute engine.closed?
    assert_nil engine.close
    assert_nil engine.close
    assert engine.closed?
    assert_equal "#<Entitle::Engine closed>", engine.inspect
    [
      -> { engine.enabled?("cus_pro", "sso") }, -> { engine.limit("cus_pro", "projects") },
      -> { engine.allows?("cus_pro", "projects", 1) }, -> { engine.check("cus_pro", "sso") },
      -> { engine.entitlements("cus_pro") }, -> { engine.version }, -> { engine.status },
      -> { engine.wait_ready(1) }, -> { engine.replace("x") }, -> { engine.apply_delta("x") }
    ].each do |call|
      error = assert_raises(Entitle::ClosedError) { call.call }
      assert_equal 17, error.code
      assert_kind_of Entitle::Error, error
      assert_kind_of StandardError, error
    end
  end

  def test_static_engine_status_and_wait
    status = @engine.status
    assert status.frozen?
    assert_equal :ready, status.state
    assert status.ready?
    refute status.syncing?
    assert_equal 0, status.syncs
    assert_same true, @engine.wait_ready(0)
    assert_same true, @engine.wait_ready
    refute @engine.syncing?
    assert_equal "#<Entitle::Engine static version=0>", @engine.inspect
  end

  def test_library_version
    assert_equal Entitle::VERSION, Entitle.library_version
    cargo = File.read(File.join(REPO, "Cargo.toml"))[/^version = "([^"]+)"/, 1]
    assert_equal cargo, Entitle::VERSION
  end
end
