# The no-op job for Ruby's Sidekiq, and its client loops (the twin of adapters/common.py).
#
# Required by `sidekiq -r` to define NoopJob; run as a script for the client side:
#   ruby adapters/sidekiq_job.rb enqueue N single|bulk   -> prints {"jobs":N,"seconds":S}
#   ruby adapters/sidekiq_job.rb latency N RATE
# Sidekiq itself reads REDIS_URL; the job's own counter pool reads BENCH_REDIS_URL.
require "json"
require "sidekiq"
require "connection_pool"

BENCH_REDIS = ConnectionPool.new(size: 20) { Redis.new(url: ENV.fetch("BENCH_REDIS_URL")) }

class NoopJob
  include Sidekiq::Worker

  def perform(t)
    started = Time.now.to_f
    BENCH_REDIS.with do |r|
      if t == 0
        r.incr("bench:done")
      else
        r.pipelined do |p|
          p.incr("bench:done")
          p.rpush("bench:latency", started - t)
        end
      end
    end
  end
end

if __FILE__ == $0
  role, n = ARGV[0], ARGV[1].to_i
  Sidekiq.redis { |c| c.ping }
  if role == "enqueue"
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    if ARGV[2] == "bulk"
      Sidekiq::Client.push_bulk("class" => NoopJob, "args" => Array.new(n) { [0] })
    else
      n.times { NoopJob.perform_async(0) }
    end
    elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    puts JSON.generate({"jobs" => n, "seconds" => elapsed})
  elsif role == "latency"
    interval = 1.0 / ARGV[2].to_f
    due = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    n.times do
      pause = due - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      sleep(pause) if pause > 0
      NoopJob.perform_async(Time.now.to_f)
      due += interval
    end
    puts JSON.generate({"jobs" => n})
  else
    abort "unknown role #{role}"
  end
end
