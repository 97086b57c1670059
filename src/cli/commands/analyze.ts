export async function runAnalyze(): Promise<number> {
  return 0;
}
